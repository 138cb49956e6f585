"""iteration: per-stage breakdown of whole iterations (generate+judge, train, sync) in sync
and async mode, and the driver's overhead: iteration time minus the stages.
Goal: driver overhead <= 5% of the iteration."""

from __future__ import annotations

import statistics
import tempfile
from typing import Any

ITERATIONS = 4


def _overheads(rows: list[dict[str, Any]], mode: str) -> list[float]:
    """Iteration time not spent in a stage (in async mode an iteration's clock holds the
    next rollout, and the first one's also its own)."""
    shares = []
    for k, row in enumerate(rows):
        if mode == "sync":
            stages = row["judge_s"] + row["train_s"] + row["sync_s"]
        else:
            rollout = rows[k + 1]["judge_s"] if k + 1 < len(rows) else 0.0
            rollout += row["judge_s"] if k == 0 else 0.0
            stages = rollout + row["train_s"] + row["sync_s"]
        shares.append(max(row["iteration_s"] - stages, 0.0) / row["iteration_s"])
    return shares


def run(runs: int = 1, cache: str | None = None) -> dict[str, Any]:
    from rlaif_ray.config import load_config
    from rlaif_ray.pipeline import run_rlaif

    result: dict[str, Any] = {"unit": "share of iteration"}
    for mode in ("sync", "async"):
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = load_config("conf/default.yaml", [
                f"run.dir={run_dir}/{mode}", f"run.mode={mode}",
                f"run.iterations={ITERATIONS}"] + ([f"cache_dir={cache}"] if cache else []))
            rows = run_rlaif(cfg)
        shares = _overheads(rows, mode)
        result[mode] = {
            "driver_overhead": {"median": statistics.median(shares), "min": min(shares),
                                "max": max(shares), "runs": shares},
            "stages_median_s": {k: statistics.median(r[k] for r in rows)
                                for k in ("generate_s", "judge_s", "train_s", "sync_s",
                                          "iteration_s")},
        }
    result["ratio"] = result["sync"]["driver_overhead"]["median"]
    result["detail"] = "; ".join(
        f"{mode}: iteration {result[mode]['stages_median_s']['iteration_s']:.1f} s, driver "
        f"{result[mode]['driver_overhead']['median']:.1%}" for mode in ("sync", "async"))
    result["goal"] = "<= 0.05"
    return result
