"""Preference pairs for DPO from a run's kept verdicts, in the columns TRL's DPOTrainer
reads: prompt, chosen, rejected (plus margin, confidence, judge_scores, iteration, source).

Pairwise runs: each pair verdict that stands with a winner is one pair (margin: how far the
votes were from a tie, 2 x agreement - 1). Pointwise runs: any two standing answers to the
same prompt whose scores differ by at least `min_margin` (margin: the score difference).
Human verdicts from `rlaif-ray review import` take the place of the judges' ones."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pyarrow as pa

from rlaif_ray.data.records import NAMED_SCORES, run_iterations, stands, to_table, write_table
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


def preference_pairs(run_dir: Location, mode: str, min_margin: float = 0.1,
                     min_confidence: float = 0.0,
                     iterations: list[int] | None = None) -> list[dict[str, Any]]:
    """The run's preference pairs (see the module docstring), iteration by iteration."""
    run_dir = StoragePath.of(run_dir)
    pairs = []
    for iteration in iterations if iterations is not None else run_iterations(run_dir):
        rows = [r for r in merged_verdicts(run_dir, iteration, mode)
                if stands(r) and r["confidence"] >= min_confidence]
        if mode == "pairwise":
            for r in rows:
                if r["item_kind"] != "pair" or r["winner"] not in ("A", "B"):
                    continue
                a, b = (r["response_id"], r["response"]), (r["response_id_b"], r["response_b"])
                chosen, rejected = (a, b) if r["winner"] == "A" else (b, a)
                margin = 2 * r["agreement"] - 1
                if margin >= min_margin:
                    pairs.append(_pair(r["prompt"], chosen, rejected, margin, r["confidence"],
                                       {"agreement": r["agreement"]}, iteration, r["source"]))
            continue
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["item_kind"] == "response" and r["score"] is not None:
                by_prompt.setdefault(r["prompt_id"], []).append(r)
        for group in by_prompt.values():
            for x, y in combinations(sorted(group, key=lambda r: -r["score"]), 2):
                if x["score"] - y["score"] >= min_margin:
                    source = "human" if "human" in (x["source"], y["source"]) else "judge"
                    pairs.append(_pair(x["prompt"], (x["response_id"], x["response"]),
                                       (y["response_id"], y["response"]),
                                       x["score"] - y["score"],
                                       min(x["confidence"], y["confidence"]),
                                       {"chosen": x["score"], "rejected": y["score"]},
                                       iteration, source))
    return pairs


def write_pairs(pairs: list[dict[str, Any]], out: Location) -> StoragePath:
    """Write `pairs` as one Parquet file (`datasets.load_dataset("parquet", ...)` reads it)."""
    return write_table(to_table(pairs, PAIR_SCHEMA), out)
