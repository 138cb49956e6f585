"""Checkpoints in a run directory and the one rule that picks the resume point.

Every fit of the trainer (one per driver start) writes its Ray Train checkpoints under its
own name, `run.dir/checkpoints/trainer-<start time>/checkpoint_*`, so a fresh fit never
restores from an earlier fit's Ray Train snapshot (which can lag the checkpoint directories
after a head loss). The driver reads the directories themselves:

- a checkpoint is complete when every file its run state lists (the policy weights, rank
  0's DeepSpeed shards) is there with its size: a copy cut short by a crash is not used;
- an iteration is committed when its line is in `metrics.jsonl` (written by the driver after
  the weight sync of that iteration);
- a run resumes from the newest complete checkpoint whose iteration is committed, and runs
  every iteration after it again (checkpoints past it are deleted, their data trimmed).

The driver, not Ray Train, prunes old checkpoints (`prune`), and only committed ones, so a
crash between a checkpoint and its metrics line can always go back to the one before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif_ray.storage import Location, StoragePath

STATE_FILE = "rlaif_state.json"
POLICY_FILE = "policy.safetensors"
# The sync probe of the policy file (token ids, the trainer's log-probs of them, the CRC-32
# of every tensor) and the trainer's dtype: a resume verifies the generators against it
# without a model of its own on the driver.
PROBE_FILE = "policy_probe.json"


@dataclass(frozen=True)
class CheckpointRef:
    """A complete checkpoint: its directory, the training iteration it ends, the critic
    it holds (`rlaif_ray.train.advantages.critic_kind`) and the rank of its policy's
    adapter (0: its policy file holds full weights)."""

    path: StoragePath
    iteration: int
    critic: str | None = None
    lora_rank: int = 0


def checkpoint_root(run_dir: Location) -> StoragePath:
    return StoragePath.of(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Location) -> list[CheckpointRef]:
    """Every complete checkpoint of every fit, oldest iteration first."""
    return fit_checkpoints(checkpoint_root(run_dir), "*/")


def fit_checkpoints(directory: Location, fits: str = "") -> list[CheckpointRef]:
    """The complete checkpoints under `directory` (one fit's; `fits="*/"`: every fit's),
    oldest iteration first."""
    found = []
    for state_path in StoragePath.of(directory).glob(f"{fits}checkpoint_*/{STATE_FILE}"):
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):  # cut short
            continue
        files = state.get("files", {POLICY_FILE: None})
        if _complete(state_path.parent, files):
            # Written before the state recorded it: a critic directory is a separate one.
            critic = state.get("critic", "separate" if any(
                name.startswith("critic/") for name in files) else None)
            found.append(CheckpointRef(state_path.parent, state["iteration"], critic,
                                       state.get("lora_rank", 0)))
    return sorted(found, key=lambda c: (c.iteration, str(c.path)))


def _complete(directory: StoragePath, files: dict[str, int | None]) -> bool:
    for name, size in files.items():
        found = (directory / name).size()
        if found is None or (size is not None and found != size):
            return False
    return True


def write_state(directory: str | Path, iteration: int, critic: str | None = None,
                lora_rank: int = 0) -> None:
    """Write the run state of a local checkpoint directory (before Ray Train persists it),
    last: its iteration, the critic it holds, its policy's adapter rank, and the size of
    every file written there before it (what `list_checkpoints` checks)."""
    directory = Path(directory)
    files = {str(p.relative_to(directory)): p.stat().st_size
             for p in sorted(directory.rglob("*")) if p.is_file()}
    (directory / STATE_FILE).write_text(json.dumps({"iteration": iteration, "critic": critic,
                                                    "lora_rank": lora_rank, "files": files}))


def write_probe(directory: str | Path, probe: dict[str, Any], dtype: str) -> None:
    """Record the sync probe (`SyncProbe` fields) of a local checkpoint's policy, computed
    by a trainer in `dtype`."""
    (Path(directory) / PROBE_FILE).write_text(json.dumps({"probe": probe, "dtype": dtype}))


def read_probe(checkpoint: CheckpointRef) -> tuple[dict[str, Any], str] | None:
    """The sync probe fields and trainer dtype saved with `checkpoint`'s policy (None: a
    checkpoint written before they were saved)."""
    path = checkpoint.path / PROBE_FILE
    if path.size() is None:
        return None
    saved = json.loads(path.read_text())
    return saved["probe"], saved["dtype"]


def _policy_kind(lora_rank: int) -> str:
    return f"a LoRA adapter of rank {lora_rank}" if lora_rank else "full weights"


def resume_mismatch(checkpoint: CheckpointRef, critic: str | None,
                    lora_rank: int = 0) -> str | None:
    """Why a run training `critic` (`critic_kind`) and an adapter of `lora_rank` cannot
    resume from `checkpoint`, or None: the policy's state must be of the same model (with
    the shared value head or without, with an adapter of the same rank or none), and a
    separate critic needs one saved (a critic-free run ignores one)."""
    if checkpoint.lora_rank != lora_rank:
        return (f"checkpoint {checkpoint.path} holds {_policy_kind(checkpoint.lora_rank)} "
                f"and this run trains {_policy_kind(lora_rank)}: resume with the "
                f"trainer.lora.rank it was written with")
    same_policy = (checkpoint.critic == "shared") == (critic == "shared")
    if same_policy and (critic != "separate" or checkpoint.critic == "separate"):
        return None
    held = {"shared": "a value head on the policy", "separate": "a separate critic",
            None: "no critic"}
    return (f"checkpoint {checkpoint.path} holds {held[checkpoint.critic]} and this run "
            f"trains {held[critic]}: resume with the trainer.advantage_estimator and "
            f"trainer.critic it was written with")


def committed_iterations(rows: list[dict]) -> int:
    """How many iterations, from 0 on, have their metrics line (0 when none)."""
    done = {row["iteration"] for row in rows}
    count = 0
    while count in done:
        count += 1
    return count


def resume_point(run_dir: Location, committed: int) -> CheckpointRef | None:
    """The newest complete checkpoint of an iteration below `committed`, or None."""
    usable = [c for c in list_checkpoints(run_dir) if c.iteration < committed]
    return usable[-1] if usable else None


def discard_after(run_dir: Location, iteration: int) -> list[StoragePath]:
    """Delete the checkpoints of iterations after `iteration` (they run again)."""
    removed = [c.path for c in list_checkpoints(run_dir) if c.iteration > iteration]
    for path in removed:
        path.rmtree()
    return removed


def prune(run_dir: Location, keep: int, committed: int) -> list[StoragePath]:
    """Keep the newest `keep` committed checkpoints (and any not committed yet); delete
    the older ones. Returns what was deleted."""
    checkpoints = list_checkpoints(run_dir)
    done = [c for c in checkpoints if c.iteration < committed]
    removed = [c.path for c in done[:-keep]] if len(done) > keep else []
    for path in removed:
        path.rmtree()
    # Fits that still hold a complete checkpoint (Ray Train's own snapshot file is none).
    holding = {c.path.parent for c in checkpoints if c.path not in removed}
    fits = [p for p in checkpoint_root(run_dir).iterdir() if p.is_dir()]
    for fit in fits[:-1]:  # earlier fits left with no checkpoint (the newest is running)
        if fit not in holding:
            fit.rmtree()
            removed.append(fit)
    return removed


def read_iteration(directory: str | Path) -> int:
    """The training iteration a local checkpoint directory ends."""
    return json.loads((Path(directory) / STATE_FILE).read_text())["iteration"]


def checkpoint_due(iteration: int, every: int, iterations: int) -> bool:
    """Whether training iteration `iteration` ends with a checkpoint (`trainer.
    checkpoint_every`; the last iteration always does)."""
    return (iteration + 1) % every == 0 or iteration == iterations - 1
