"""Run directories judged by hand-written votes (real Parquet parts, the schemas a run
writes), so the review logic and page are tested without engines."""

from __future__ import annotations

import pytest

from rlaif_ray.config import default_config_path, load_config, to_yaml
from rlaif_ray.data.records import (
    CANDIDATE_SCHEMA,
    VERDICT_SCHEMA,
    VOTE_SCHEMA,
    table_dir,
    to_table,
    write_table,
)
from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS, Rubric

DIMENSIONS = tuple(DEFAULT_DIMENSIONS)


def _verdict(item_id, kind, confidence, status, **values):
    row = {"item_id": item_id, "item_kind": kind, "prompt_id": "p-" + item_id,
           "response_id": item_id, "response_id_b": None, "dimension_scores": None,
           "score": None, "winner": None, "reward": None, "agreement": confidence,
           "confidence": confidence, "votes_kept": 2, "votes_dropped": 0,
           "judges_standing": 2, "status": status, "source": "judge",
           "prompt": f"Prompt of {item_id}", "response": f"Answer {item_id}",
           "response_b": None, "reviewer": None, "reviewed_at": None}
    row.update(values)
    return row


def _vote(item_id, judge, kind, **values):
    row = {"item_id": item_id, "prompt_id": "p-" + item_id, "judge": judge,
           "judge_kind": "llm", "replica": judge + "-0", "kind": kind, "order": "",
           "sample_index": 0, "raw_text": "{}", "scores": None, "overall": None,
           "winner": None, "dimension_winners": None, "first_slot": None,
           "parse_status": "ok", "error": None, "judge_s": 0.1, "prompt_tokens": 10,
           "completion_tokens": 5}
    row.update(values)
    return row


def _candidate(response_id, prompt_id):
    return {"prompt_id": prompt_id, "prompt": "Prompt", "prompt_token_ids": [1, 2],
            "response_id": response_id, "response": "Answer " + response_id,
            "response_token_ids": [3, 4, 5], "logprobs": [-1.0, -1.0, -1.0],
            "finish_reason": "stop", "generator_replica": "g-0", "generation_s": 0.1}


def write_iteration(run_dir, iteration, verdicts, votes):
    """One iteration's candidate, verdict and vote parts, as a run writes them."""
    common = {"run_id": "run", "iteration": iteration, "policy_version": iteration}
    answers = {(v["response_id"], v["prompt_id"]) for v in verdicts}
    answers |= {(v["response_id_b"], v["prompt_id"]) for v in verdicts if v["response_id_b"]}
    write_table(to_table([_candidate(*a) for a in sorted(answers)], CANDIDATE_SCHEMA, **common),
                table_dir(run_dir, "candidates", iteration) / "part-00000.parquet")
    write_table(to_table(verdicts, VERDICT_SCHEMA, **common),
                table_dir(run_dir, "verdicts", iteration) / "part-00000.parquet")
    write_table(to_table(votes, VOTE_SCHEMA, **common),
                table_dir(run_dir, "votes", iteration) / "part-00000.parquet")


def _scores(*values):
    return dict(zip(DIMENSIONS, values, strict=True))


def _config(run_dir, mode):
    cfg = load_config(default_config_path(), [f"rubric.mode={mode}", f"run.dir={run_dir}"])
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    return Rubric.from_config(cfg.rubric)


@pytest.fixture
def pointwise_run(tmp_path):
    """Iteration 0: items a (confidence 0.1, judges disagree on factual_accuracy), b (0.2)
    and c (kept); iteration 1: item d (abstained: no valid vote). Judges j1 and j2."""
    run_dir = tmp_path / "pointwise"
    run_dir.mkdir()
    rubric = _config(run_dir, "pointwise")
    write_iteration(run_dir, 0, [
        _verdict("b", "response", 0.2, "dropped", response="<script>alert(1)</script>"),
        _verdict("a", "response", 0.1, "dropped"),
        _verdict("c", "response", 0.9, "kept", score=0.8, reward=0.8),
    ], [
        _vote("a", "j1", "pointwise", scores=_scores(2, 5, 5, 9), overall=0.4),
        _vote("a", "j2", "pointwise", scores=_scores(9, 5, 5, 9), overall=0.7),
        _vote("b", "j1", "pointwise", scores=_scores(3, 3, 3, 9), overall=0.3),
        _vote("b", "j1", "pointwise", scores=_scores(3, 3, 3, 9), overall=0.3,
              sample_index=1),
        _vote("c", "j1", "pointwise", scores=_scores(8, 8, 8, 9), overall=0.8),
        _vote("c", "j2", "pointwise", scores=_scores(8, 8, 8, 9), overall=0.8),
    ])
    write_iteration(run_dir, 1, [_verdict("d", "response", 0.0, "abstained")], [
        _vote("d", "j2", "pointwise", parse_status="abstain", raw_text="not json")])
    return run_dir, rubric


@pytest.fixture
def pairwise_run(tmp_path):
    """Iteration 0: pairs x (dropped: j1's two orders disagree) and y (kept)."""
    run_dir = tmp_path / "pairwise"
    run_dir.mkdir()
    rubric = _config(run_dir, "pairwise")
    pair = {"response_id_b": None, "response_b": None}
    write_iteration(run_dir, 0, [
        _verdict("x", "pair", 0.0, "dropped", response_id="x1", response_id_b="x2",
                 prompt_id="p", response="first", response_b="second"),
        _verdict("y", "pair", 1.0, "kept", response_id="y1", response_id_b="y2",
                 prompt_id="p", winner="B", response="third", response_b="fourth"),
        _verdict("x1", "response", 0.5, "kept", prompt_id="p", reward=0.5, **pair),
    ], [
        _vote("x", "j1", "pairwise", order="AB", winner="A", first_slot=True,
              dimension_winners={d: "A" for d in DIMENSIONS}),
        _vote("x", "j1", "pairwise", order="BA", winner="B", first_slot=True,
              dimension_winners={d: "B" for d in DIMENSIONS}),
        _vote("y", "j1", "pairwise", order="AB", winner="B", first_slot=False,
              dimension_winners={d: "B" for d in DIMENSIONS}),
    ])
    return run_dir, rubric
