"""Finding the last completed training iteration in a run directory (for run.resume)."""

from __future__ import annotations

import json
from pathlib import Path

from rlaif_ray.train.worker import POLICY_FILE, STATE_FILE


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / "trainer"


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, int] | None:
    """(directory, iteration) of the newest complete checkpoint, or None."""
    best: tuple[Path, int] | None = None
    for state in checkpoint_root(run_dir).glob(f"checkpoint_*/{STATE_FILE}"):
        if not (state.parent / POLICY_FILE).is_file():
            continue
        iteration = json.loads(state.read_text())["iteration"]
        if best is None or iteration > best[1]:
            best = (state.parent, iteration)
    return best
