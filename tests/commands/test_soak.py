"""The soak in CI with a small N: random SIGKILLs during a run, nothing lost or doubled."""

import json

import pytest

from rlaif_ray.soak import main

pytestmark = pytest.mark.slow


def test_soak_survives_a_head_loss_and_random_faults(ray_session, model_cache, tmp_path,
                                                     capsys):
    run_dir = tmp_path / "soak"
    code = main(["--faults", "1", "--seed", "1", "conf/default.yaml", f"run.dir={run_dir}",
                 f"cache_dir={model_cache}", "run.iterations=3", "prompts.limit=4",
                 "generator.samples_per_prompt=4"])
    report = json.loads((run_dir / "soak.json").read_text())
    assert code == 0, report
    assert report["faults"][0]["target"] == "session"  # the head loss, then a replica
    assert report["faults_injected"] == 2 and report["faults_survived"] == 2
    assert report["items_lost"] == 0 and report["duplicates"] == 0
    assert "faults injected: 2, faults survived: 2, items lost: 0, duplicates: 0" in \
        capsys.readouterr().out
