"""Preference pairs for DPO from a run's kept verdicts, in the columns TRL's DPOTrainer
reads: prompt, chosen, rejected (plus margin, confidence, judge_scores, iteration, source).

Pairwise runs: each pair verdict that stands with a winner is one pair (margin: how far the
votes were from a tie, 2 x agreement - 1). Pointwise runs: any two standing answers to the
same prompt whose scores differ by at least `min_margin` (margin: the score difference).
Human verdicts from `rlaif-ray review import` take the place of the judges' ones."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rlaif_ray.data.records import read_parts, run_iterations
from rlaif_ray.judge.review import merged_verdicts, standing

PAIR_SCHEMA = pa.schema([
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("chosen", pa.string(), nullable=False),
    pa.field("rejected", pa.string(), nullable=False),
    pa.field("margin", pa.float64(), nullable=False),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("judge_scores", pa.map_(pa.string(), pa.float64())),
    pa.field("iteration", pa.int64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # judge | human
    pa.field("chosen_id", pa.string(), nullable=False),
    pa.field("rejected_id", pa.string(), nullable=False),
])


def _pair(answers: dict[str, dict[str, Any]], chosen: str, rejected: str, margin: float,
          confidence: float, scores: dict[str, float], iteration: int,
          source: str) -> dict[str, Any]:
    return {"prompt": answers[chosen]["prompt"], "chosen": answers[chosen]["response"],
            "rejected": answers[rejected]["response"], "margin": margin,
            "confidence": confidence, "judge_scores": scores, "iteration": iteration,
            "source": source, "chosen_id": chosen, "rejected_id": rejected}


def preference_pairs(run_dir: str | Path, mode: str, min_margin: float = 0.1,
                     min_confidence: float = 0.0,
                     iterations: list[int] | None = None) -> list[dict[str, Any]]:
    """The run's preference pairs (see the module docstring), iteration by iteration."""
    run_dir = Path(run_dir)
    pairs = []
    for iteration in iterations if iterations is not None else run_iterations(run_dir):
        answers = {row["response_id"]: row for row in read_parts(
            run_dir / "data" / f"iter={iteration}" / "candidates",
            columns=["response_id", "prompt", "response"])}
        rows = [r for r in merged_verdicts(run_dir, iteration, mode)
                if standing(r) and r["confidence"] >= min_confidence]
        if mode == "pairwise":
            for r in rows:
                if r["item_kind"] != "pair" or r["winner"] not in ("A", "B"):
                    continue
                a, b = r["response_id"], r["response_id_b"]
                chosen, rejected = (a, b) if r["winner"] == "A" else (b, a)
                margin = 2 * r["agreement"] - 1
                if margin >= min_margin:
                    pairs.append(_pair(answers, chosen, rejected, margin, r["confidence"],
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
                    pairs.append(_pair(answers, x["response_id"], y["response_id"],
                                       x["score"] - y["score"],
                                       min(x["confidence"], y["confidence"]),
                                       {"chosen": x["score"], "rejected": y["score"]},
                                       iteration, source))
    return pairs


def write_pairs(pairs: list[dict[str, Any]], out: str | Path) -> Path:
    """Write `pairs` as one Parquet file (`datasets.load_dataset("parquet", ...)` reads it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(pairs, schema=PAIR_SCHEMA), out)
    return out
