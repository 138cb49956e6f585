"""A run whose run.dir is a URI on a real S3-compatible server (moto, on 127.0.0.1): every
output lands in the bucket and none on the driver's disk, a head loss in a later iteration
resumes from the bucket alone, and the policy exports from there."""

import os
import re
import signal

import pytest
from safetensors.torch import load_file
from toy import assert_dataset_complete, run_cli, toy_args

from rlaif_ray.cli import main
from rlaif_ray.faults import ENV
from rlaif_ray.metrics import read_metrics
from rlaif_ray.storage import StoragePath
from rlaif_ray.train.checkpoints import POLICY_FILE, list_checkpoints

pytestmark = pytest.mark.slow

OUTPUTS = ("config.yaml", "metrics.jsonl", "summary.json", "plots/reward.png",
           "review/queue.jsonl", "policy/config.json", "policy/model.safetensors",
           "policy/tokenizer_config.json")


def test_a_run_on_s3_keeps_everything_there_and_resumes_from_it(s3_env, model_cache,
                                                                 tmp_path):
    run_dir = "s3://rlaif/runs/toy"
    workdir = tmp_path / "driver-cwd"  # the driver's own disk: must stay empty
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # holds s3_env
    args = toy_args(model_cache, run_dir, 3) + ["run.resume=true"]
    # Head loss after iteration 1's checkpoint reached the bucket, before its metrics line:
    # the resume must go back to checkpoint 0 and delete the newer one from the bucket.
    killed = run_cli(args, {**env, ENV: "commit@1/session"}, cwd=workdir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [r["iteration"] for r in read_metrics(run_dir)] == [0]
    assert 1 in [c.iteration for c in list_checkpoints(run_dir)]

    done = run_cli(args, env, cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {run_dir} at iteration 1, from the checkpoint of iteration 0" in \
        done.stdout
    assert not re.search(r"(?m)^Traceback", done.stderr)

    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["policy_version"] for r in rows] == [0, 1, 2]
    assert_dataset_complete(run_dir, 3, 4 * 4)
    root = StoragePath.of(run_dir)
    missing = [name for name in OUTPUTS if not (root / name).is_file()]
    assert not missing, missing
    assert (root / "tensorboard").glob("events.out.tfevents.*")
    checkpoints = list_checkpoints(run_dir)
    assert [c.iteration for c in checkpoints] == [1, 2]  # trainer.keep_checkpoints
    assert all(str(c.path).startswith(f"{run_dir}/checkpoints/trainer-") for c in checkpoints)
    assert (root / "policy" / "RLAIF_CHECKPOINT").read_text() == "iteration 2\n"
    assert list(workdir.iterdir()) == []

    out = tmp_path / "exported"
    assert main(["export", run_dir, str(out), "--iteration", "1"]) == 0
    with (checkpoints[0].path / POLICY_FILE).local_copy() as policy:
        expected = load_file(policy)
    exported = load_file(out / "model.safetensors")
    assert exported.keys() == expected.keys()
    assert all(exported[k].equal(expected[k]) for k in expected)
    assert (out / "config.json").is_file() and (out / "RLAIF_CHECKPOINT").read_text() == \
        "iteration 1\n"
