"""`rlaif-ray generate` end to end (in-process, on the session's Ray)."""

import pyarrow.parquet as pq
import pytest

from rlaif_ray.cli import main
from rlaif_ray.data.records import CANDIDATE_SCHEMA

pytestmark = pytest.mark.slow


def test_generate_writes_candidates_parquet(ray_session, model_cache, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["generate", "conf/default.yaml", f"run.dir={run_dir}", f"cache_dir={model_cache}",
                 "prompts.limit=3", "generator.samples_per_prompt=2", "generator.max_tokens=8"])
    assert code == 0
    table = pq.read_table(run_dir / "generate" / "candidates.parquet")
    assert table.schema.equals(CANDIDATE_SCHEMA)
    assert table.num_rows == 6
    assert set(table.column("run_id").to_pylist()) == {"run"}
    assert (run_dir / "config.yaml").read_text().count("samples_per_prompt: 2") == 1
    assert "6 samples for 3 prompts" in capsys.readouterr().out


def test_generate_rejects_bad_prompts_before_starting_anything(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    assert main(["generate", f"prompts.path={bad}", f"run.dir={tmp_path / 'r'}"]) == 2
    assert "bad.jsonl:2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
