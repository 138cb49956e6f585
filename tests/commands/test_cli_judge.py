"""`rlaif-ray judge` and `rlaif-ray review` end to end on the default config."""

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from rlaif_ray.cli import main
from rlaif_ray.data.parts import iteration_dataset
from rlaif_ray.data.records import VERDICT_SCHEMA

pytestmark = pytest.mark.slow


def verdicts_table(run_dir):
    return pq.read_table(run_dir / "data" / "verdicts" / "iter=0").to_pylist()


def test_judge_command_writes_dataset_skips_judged_prompts_and_reviews(
        ray_session, model_cache, tmp_path, capsys):
    run_dir = tmp_path / "prefs"
    # The random-weight judge: its votes scatter, so some verdicts fall to review.
    args = ["judge", "conf/default.yaml", f"run.dir={run_dir}", f"cache_dir={model_cache}",
            "generator.max_tokens=8", "generator.samples_per_prompt=4",
            "judges.0.model=tiny-qwen2", "review.confidence_threshold=0.9"]
    assert main(args + ["prompts.limit=2"]) == 0
    verdicts = pq.read_table(run_dir / "data" / "verdicts" / "iter=0")
    assert set(VERDICT_SCHEMA.names) <= set(verdicts.column_names)
    assert verdicts.num_rows == 2 * 4
    assert iteration_dataset(run_dir, 0).count() == 8
    out = capsys.readouterr().out  # the end: counts by status, where pairs and queue are
    statuses = Counter(verdicts.column("status").to_pylist())
    assert (f"judged 2 prompts: 8 items, {statuses['kept']} kept, {statuses['dropped']} "
            f"dropped, {statuses['abstained']} abstained") in out
    queued = (run_dir / "review" / "queue.jsonl").read_text().splitlines()
    assert f"review: {len(queued)} low-confidence items in {run_dir}/review/queue.jsonl" in out
    assert f"in {run_dir}/pairs.parquet" in out

    assert main(args + ["prompts.limit=3"]) == 0  # only the new prompt is judged
    assert "skipping 2 prompts already judged" in capsys.readouterr().out
    verdicts = verdicts_table(run_dir)
    assert len(verdicts) == 3 * 4
    assert len({v["response_id"] for v in verdicts}) == 12

    queue = tmp_path / "queue.jsonl"
    assert main(["review", "export", str(run_dir), "--out", str(queue)]) == 0
    entries = [json.loads(line) for line in queue.read_text().splitlines()]
    assert entries, "a 0.9 confidence floor leaves items for review"
    entries[0]["verdict"] = 9
    queue.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert main(["review", "import", str(run_dir), str(queue)]) == 0
    assert "merged 1 human verdicts" in capsys.readouterr().out
    entries[0]["verdict"] = "great"
    entries[0]["review_id"] = "0:missing"
    queue.write_text(json.dumps(entries[0]) + "\n")
    assert main(["review", "import", str(run_dir), str(queue)]) == 2
    assert "queue.jsonl:1: unknown review_id '0:missing'" in capsys.readouterr().err

    # DPO pairs: written by the judge command, and by `rlaif-ray pairs` with the human
    # verdict in place; each checked against the verdicts it came from
    assert (run_dir / "pairs.parquet").is_file()
    out = tmp_path / "pairs.parquet"
    assert main(["pairs", str(run_dir), "--out", str(out), "--min-margin", "0.01"]) == 0
    assert "preference pairs written to" in capsys.readouterr().out
    from rlaif_ray.review.queue import merged_verdicts

    rows = {v.response_id: v for v in merged_verdicts(run_dir, 0, "pointwise")
            if v.item_kind == "response"}
    reviewed = {v["item_id"] for v in verdicts_table(run_dir) if v["source"] == "human"}
    assert len(reviewed) == 1
    for pair in pq.read_table(out).to_pylist():
        chosen, rejected = rows[pair["chosen_id"]], rows[pair["rejected_id"]]
        assert chosen.stands and rejected.stands
        assert chosen.prompt_id == rejected.prompt_id
        assert pair["margin"] == pytest.approx(chosen.score - rejected.score)
        assert pair["margin"] >= 0.01
        if reviewed & {pair["chosen_id"], pair["rejected_id"]}:
            assert pair["source"] == "human"
