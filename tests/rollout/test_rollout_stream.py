"""Judging on real vLLM judges and real Ray: structured output, the streamed dataset,
backpressure, and the review round trip."""

import json

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from rlaif_ray.data.parts import iteration_dataset
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.data.records import CANDIDATE_SCHEMA, VERDICT_SCHEMA, VOTE_SCHEMA, table_dir
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.review.human import import_review
from rlaif_ray.review.queue import ReviewError, export_review, merged_verdicts
from rlaif_ray.rollout.stream import RolloutStream, write_batch

pytestmark = pytest.mark.slow


def with_overrides(cfg, *overrides):
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def judge_run(cfg, generator_pool, judge_pools, prompts, run_dir=None, iteration=0):
    rubric = Rubric.from_config(cfg.rubric)
    stream = RolloutStream(cfg, generator_pool, judge_pools, rubric)
    batches = []
    for batch in stream.run(prompts, iteration):
        if run_dir is not None:
            write_batch(batch, run_dir, iteration)
        batches.append(batch)
    return stream, batches


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_llm_judge_votes_all_parse_under_structured_output(judge_config, generator_pool,
                                                           judge_pools, mode):
    cfg = with_overrides(judge_config, f"rubric.mode={mode}")
    _, batches = judge_run(cfg, generator_pool, judge_pools, load_prompts(limit=4))
    votes = [v for b in batches for v in b.votes if v.judge_kind == "llm"]
    items = sum(len({v.item_id for v in b.votes}) for b in batches)
    expected_per_item = 3 if mode == "pointwise" else 6  # pairwise: both orders
    assert len(votes) == items * expected_per_item
    assert all(v.parse_status == "ok" for v in votes)
    if mode == "pairwise":
        assert {v.order for v in votes} == {"AB", "BA"}
        assert all(v.winner in ("A", "B", "tie") for v in votes)


def test_stream_writes_dataset_with_one_verdict_per_candidate(judge_config, generator_pool,
                                                              judge_pools, tmp_path,
                                                              ray_session):
    run_dir = tmp_path / "run"
    prompts = load_prompts(limit=6)
    judge_run(judge_config, generator_pool, judge_pools, prompts, run_dir)
    for name, schema in (("candidates", CANDIDATE_SCHEMA), ("votes", VOTE_SCHEMA),
                         ("verdicts", VERDICT_SCHEMA)):
        table = pq.read_table(table_dir(run_dir, name, 0), schema=schema)
        assert table.num_rows > 0
    candidates = pq.read_table(table_dir(run_dir, "candidates", 0)).to_pylist()
    verdicts = iteration_dataset(run_dir, 0).take_all()
    assert len(candidates) == 6 * 3
    assert sorted(v["response_id"] for v in verdicts) == sorted(c["response_id"]
                                                               for c in candidates)
    assert all(v["run_id"] == "run" and v["iteration"] == 0 for v in verdicts)
    kept = [v for v in verdicts if v["status"] == "kept"]
    assert all(v["reward"] is not None and 0 <= v["reward"] <= 1 for v in kept)
    assert all(v["reward"] is None for v in verdicts if v["status"] != "kept")
    import ray

    table = ray.data.read_parquet(str(run_dir / "data" / "verdicts"))  # one table, as is
    assert table.count() == len(verdicts) and "prompt" in table.schema().names
    votes = iteration_dataset(run_dir, 0, "votes")
    assert set(votes.unique("judge")) == {"test-qwen", "rules"}


@pytest.mark.parametrize("limit", [1, 2])
def test_backpressure_bound_is_honoured(judge_config, generator_pool, judge_pools, limit):
    cfg = with_overrides(judge_config, f"stream.max_batches_in_flight={limit}")
    batch_size = generator_pool.cfg.batch_size
    generator_pool.cfg.batch_size = 1  # one prompt per candidate batch
    try:
        stream, batches = judge_run(cfg, generator_pool, judge_pools, load_prompts(limit=6))
    finally:
        generator_pool.cfg.batch_size = batch_size
    assert len(batches) == 6
    assert stream.max_in_flight_seen == limit


def test_review_round_trip(judge_config, generator_pool, judge_pools, tmp_path):
    # An impossible confidence floor sends every verdict to review.
    cfg = with_overrides(judge_config, "review.confidence_threshold=1.0")
    run_dir = tmp_path / "review-run"
    judge_run(cfg, generator_pool, judge_pools, load_prompts(limit=2), run_dir)
    rubric = Rubric.from_config(cfg.rubric)
    queue_file = tmp_path / "queue.jsonl"
    count = export_review(run_dir, queue_file, "pointwise")
    entries = [json.loads(line) for line in queue_file.read_text().splitlines()]
    assert count == len(entries) == 2 * 3
    assert all(e["verdict"] is None and e["votes"] and e["response"] is not None
               for e in entries)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**entries[0], "verdict": 7}) + "\n" +
                   json.dumps({**entries[1], "review_id": "0:nope", "verdict": 3}) + "\n")
    with pytest.raises(ReviewError, match=r"bad.jsonl:2: unknown review_id '0:nope'"):
        import_review(run_dir, bad, rubric)
    bad.write_text(json.dumps({**entries[0], "verdict": 11}) + "\n")
    with pytest.raises(ReviewError, match=r"bad.jsonl:1: verdict must be an integer score"):
        import_review(run_dir, bad, rubric)
    assert not table_dir(run_dir, "verdicts", 0).glob("part-human-*")  # nothing merged

    entries[0]["verdict"], entries[1]["verdict"] = 10, 1
    queue_file.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert import_review(run_dir, queue_file, rubric) == 2
    merged = {v.item_id: v for v in merged_verdicts(run_dir, 0, "pointwise")}
    assert merged[entries[0]["item_id"]].reward == 1.0
    assert merged[entries[1]["item_id"]].reward == 0.0
    assert merged[entries[0]["item_id"]].status == "human"
    table = pq.read_table(table_dir(run_dir, "verdicts", 0)).to_pylist()
    humans = [v for v in table if v["source"] == "human"]  # rows of the verdict table
    assert sorted(v["item_id"] for v in humans) == sorted(e["item_id"] for e in entries[:2])
    assert all(v["prompt"] and v["response"] for v in humans)
    assert len(table) == len(humans) + len({v["item_id"] for v in table})  # judges' kept
    assert export_review(run_dir, queue_file, "pointwise") == 4  # reviewed items leave
