"""Preference pairs for DPO from a run's kept verdicts, in the columns TRL's DPOTrainer
reads: prompt, chosen, rejected (plus margin, confidence, judge_scores, iteration, source).

Pairwise runs: each pair verdict that stands with a winner is one pair (margin: how far the
votes were from a tie, 2 x agreement - 1). Pointwise runs: any two standing answers to the
same prompt whose scores differ by at least `min_margin` (margin: the score difference).
Human verdicts from `rlaif-ray review import` take the place of the judges' ones."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import pyarrow as pa

from rlaif_ray.data.records import (
    NAMED_SCORES,
    ItemKind,
    Verdict,
    run_iterations,
    to_table,
    write_table,
)
from rlaif_ray.registry import registered
from rlaif_ray.review.queue import merged_verdicts
from rlaif_ray.storage import Location, StoragePath

PAIR_SCHEMA = pa.schema([
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("chosen", pa.string(), nullable=False),
    pa.field("rejected", pa.string(), nullable=False),
    pa.field("margin", pa.float64(), nullable=False),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("judge_scores", NAMED_SCORES),
    pa.field("iteration", pa.int64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # judge | human
    pa.field("chosen_id", pa.string(), nullable=False),
    pa.field("rejected_id", pa.string(), nullable=False),
])


def _pair(prompt: str, chosen: tuple[str, str], rejected: tuple[str, str], margin: float,
          confidence: float, scores: dict[str, float], iteration: int,
          source: str) -> dict[str, Any]:
    """One pair row; `chosen` and `rejected` are (response_id, text)."""
    return {"prompt": prompt, "chosen": chosen[1], "rejected": rejected[1], "margin": margin,
            "confidence": confidence, "judge_scores": scores, "iteration": iteration,
            "source": source, "chosen_id": chosen[0], "rejected_id": rejected[0]}


def _pairs_of_pair_verdicts(verdicts: list[Verdict], iteration: int,
                            min_margin: float) -> list[dict[str, Any]]:
    """Pairwise runs: each pair verdict with a winner, its margin 2 x agreement - 1."""
    pairs = []
    for v in verdicts:
        if (v.item_kind != ItemKind.PAIR or v.winner not in ("A", "B")
                or v.response_id_b is None or v.response_b is None):
            continue
        a, b = (v.response_id, v.response), (v.response_id_b, v.response_b)
        chosen, rejected = (a, b) if v.winner == "A" else (b, a)
        margin = 2 * v.agreement - 1
        if margin >= min_margin:
            pairs.append(_pair(v.prompt, chosen, rejected, margin, v.confidence,
                               {"agreement": v.agreement}, iteration, v.source))
    return pairs


def _pairs_of_scores(verdicts: list[Verdict], iteration: int,
                     min_margin: float) -> list[dict[str, Any]]:
    """Pointwise runs: any two scored answers to one prompt at least `min_margin` apart."""
    by_prompt: dict[str, list[tuple[float, Verdict]]] = {}
    for v in verdicts:
        if v.item_kind == ItemKind.RESPONSE and v.score is not None:
            by_prompt.setdefault(v.prompt_id, []).append((v.score, v))
    pairs = []
    for group in by_prompt.values():
        ranked = sorted(group, key=lambda scored: -scored[0])
        for (x_score, x), (y_score, y) in combinations(ranked, 2):
            if x_score - y_score >= min_margin:
                source = "human" if "human" in (x.source, y.source) else "judge"
                pairs.append(_pair(x.prompt, (x.response_id, x.response),
                                   (y.response_id, y.response), x_score - y_score,
                                   min(x.confidence, y.confidence),
                                   {"chosen": x_score, "rejected": y_score}, iteration,
                                   source))
    return pairs


# How each rubric mode's standing verdicts make pairs (`rlaif_ray.judge.modes`).
PAIR_MAKERS: dict[str, Callable[[list[Verdict], int, float], list[dict[str, Any]]]] = {
    "pointwise": _pairs_of_scores,
    "pairwise": _pairs_of_pair_verdicts,
}


def preference_pairs(run_dir: Location, mode: str, min_margin: float = 0.1,
                     min_confidence: float = 0.0,
                     iterations: list[int] | None = None) -> list[dict[str, Any]]:
    """The run's preference pairs (see the module docstring), iteration by iteration."""
    run_dir = StoragePath.of(run_dir)
    make = registered(PAIR_MAKERS, mode, "rubric mode")
    pairs = []
    for iteration in iterations if iterations is not None else run_iterations(run_dir):
        standing = [v for v in merged_verdicts(run_dir, iteration, mode)
                    if v.stands and v.confidence >= min_confidence]
        pairs += make(standing, iteration, min_margin)
    return pairs


def write_pairs(pairs: list[dict[str, Any]], out: Location) -> StoragePath:
    """Write `pairs` as one Parquet file (`datasets.load_dataset("parquet", ...)` reads it)."""
    return write_table(to_table(pairs, PAIR_SCHEMA), out)
