"""Run directories judged by hand-written votes (real Parquet parts, the schemas a run
writes), so the review logic and page are tested without engines."""

from __future__ import annotations

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
from rlaif_ray.storage import StoragePath

DIMENSIONS = tuple(DEFAULT_DIMENSIONS)


def verdict_row(item_id, kind, confidence, status, **values):
    row = {"item_id": item_id, "item_kind": kind, "prompt_id": "p-" + item_id,
           "response_id": item_id, "response_id_b": None, "dimension_scores": None,
           "score": None, "winner": None, "reward": None, "agreement": confidence,
           "confidence": confidence, "votes_kept": 2, "votes_dropped": 0,
           "judges_standing": 2, "status": status, "source": "judge",
           "prompt": f"Prompt of {item_id}", "response": f"Answer {item_id}",
           "response_b": None, "reviewer": None, "reviewed_at": None}
    row.update(values)
    return row


def vote_row(item_id, judge, kind, **values):
    row = {"item_id": item_id, "prompt_id": "p-" + item_id, "judge": judge,
           "judge_kind": "llm", "replica": judge + "-0", "kind": kind, "order": "",
           "sample_index": 0, "raw_text": "{}", "scores": None, "overall": None,
           "winner": None, "dimension_winners": None, "first_slot": None,
           "parse_status": "ok", "error": None, "judge_s": 0.1, "prompt_tokens": 10,
           "completion_tokens": 5}
    row.update(values)
    return row


def candidate_row(response_id, prompt_id):
    return {"prompt_id": prompt_id, "prompt": "Prompt", "prompt_token_ids": [1, 2],
            "response_id": response_id, "response": "Answer " + response_id,
            "response_token_ids": [3, 4, 5], "logprobs": [-1.0, -1.0, -1.0],
            "finish_reason": "stop", "generator_replica": "g-0", "generation_s": 0.1}


def write_iteration(run_dir, iteration, verdicts, votes):
    """One iteration's candidate, verdict and vote parts, as a run writes them."""
    common = {"run_id": "run", "iteration": iteration, "policy_version": iteration}
    answers = {(v["response_id"], v["prompt_id"]) for v in verdicts}
    answers |= {(v["response_id_b"], v["prompt_id"]) for v in verdicts if v["response_id_b"]}
    write_table(to_table([candidate_row(*a) for a in sorted(answers)], CANDIDATE_SCHEMA, **common),
                table_dir(run_dir, "candidates", iteration) / "part-00000.parquet")
    write_table(to_table(verdicts, VERDICT_SCHEMA, **common),
                table_dir(run_dir, "verdicts", iteration) / "part-00000.parquet")
    write_table(to_table(votes, VOTE_SCHEMA, **common),
                table_dir(run_dir, "votes", iteration) / "part-00000.parquet")


def scores(*values):
    return dict(zip(DIMENSIONS, values, strict=True))


def write_config(run_dir, mode):
    """The run's config.yaml with `rubric.mode` set; returns its rubric."""
    cfg = load_config(default_config_path(), [f"rubric.mode={mode}", f"run.dir={run_dir}"])
    (StoragePath.of(run_dir) / "config.yaml").write_text(to_yaml(cfg))
    return Rubric.from_config(cfg.rubric)


def write_pointwise_run(run_dir):
    """Iteration 0: items a (confidence 0.1, judges disagree on factual_accuracy), b (0.2)
    and c (kept); iteration 1: item d (abstained: no valid vote). Judges j1 and j2. Returns
    the rubric."""
    rubric = write_config(run_dir, "pointwise")
    write_iteration(run_dir, 0, [
        verdict_row("b", "response", 0.2, "dropped", response="<script>alert(1)</script>"),
        verdict_row("a", "response", 0.1, "dropped"),
        verdict_row("c", "response", 0.9, "kept", score=0.8, reward=0.8),
    ], [
        vote_row("a", "j1", "pointwise", scores=scores(2, 5, 5, 9), overall=0.4),
        vote_row("a", "j2", "pointwise", scores=scores(9, 5, 5, 9), overall=0.7),
        vote_row("b", "j1", "pointwise", scores=scores(3, 3, 3, 9), overall=0.3),
        vote_row("b", "j1", "pointwise", scores=scores(3, 3, 3, 9), overall=0.3,
              sample_index=1),
        vote_row("c", "j1", "pointwise", scores=scores(8, 8, 8, 9), overall=0.8),
        vote_row("c", "j2", "pointwise", scores=scores(8, 8, 8, 9), overall=0.8),
    ])
    write_iteration(run_dir, 1, [verdict_row("d", "response", 0.0, "abstained")], [
        vote_row("d", "j2", "pointwise", parse_status="abstain", raw_text="not json")])
    return rubric


def write_pairwise_run(run_dir):
    """Iteration 0: pairs x (dropped: j1's two orders disagree) and y (kept). Returns the
    rubric."""
    rubric = write_config(run_dir, "pairwise")
    pair = {"response_id_b": None, "response_b": None}
    write_iteration(run_dir, 0, [
        verdict_row("x", "pair", 0.0, "dropped", response_id="x1", response_id_b="x2",
                 prompt_id="p", response="first", response_b="second"),
        verdict_row("y", "pair", 1.0, "kept", response_id="y1", response_id_b="y2",
                 prompt_id="p", winner="B", response="third", response_b="fourth"),
        verdict_row("x1", "response", 0.5, "kept", prompt_id="p", reward=0.5, **pair),
    ], [
        vote_row("x", "j1", "pairwise", order="AB", winner="A", first_slot=True,
              dimension_winners={d: "A" for d in DIMENSIONS}),
        vote_row("x", "j1", "pairwise", order="BA", winner="B", first_slot=True,
              dimension_winners={d: "B" for d in DIMENSIONS}),
        vote_row("y", "j1", "pairwise", order="AB", winner="B", first_slot=False,
              dimension_winners={d: "B" for d in DIMENSIONS}),
    ])
    return rubric
