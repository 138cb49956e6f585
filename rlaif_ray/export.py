"""The trained policy as a model directory a user can serve: `run.dir/policy/` (the newest
checkpoint's policy, rewritten after each committed checkpoint) and `rlaif-ray export RUN_DIR
OUT [--iteration K]`. The directory holds the base model's config, generation config and
tokenizer files (with the chat template) and the checkpoint's weights as
`model.safetensors`, so transformers' `from_pretrained`, a vLLM engine and vLLM's
OpenAI-compatible server load it as they would the base model."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rlaif_ray.models import BUILD_RECORD
from rlaif_ray.storage import Location, StoragePath, replacing_dir
from rlaif_ray.train.checkpoints import POLICY_FILE, CheckpointRef, list_checkpoints

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
EXPORTED_FROM = "RLAIF_CHECKPOINT"  # names the checkpoint an export came from


def _marker(iteration: int) -> str:
    """What `EXPORTED_FROM` holds for the checkpoint of `iteration`."""
    return f"iteration {iteration}\n"


def export_policy(checkpoint: CheckpointRef, model_path: str | Path,
                  out: Location) -> StoragePath:
    """Write `checkpoint`'s policy as a model directory at `out`. Locally the directory is
    replaced whole (a reader never sees a half-written one); on an object store the files
    are replaced one by one and the `RLAIF_CHECKPOINT` marker, naming the iteration, is
    removed first and written last."""
    out = StoragePath.of(out)
    marker = _marker(checkpoint.iteration)
    if out.is_local:
        out.parent.mkdir()
        with replacing_dir(Path(out.path)) as staging:
            _stage(checkpoint, model_path, staging)
            (staging / EXPORTED_FROM).write_text(marker)
        return out
    with tempfile.TemporaryDirectory(prefix="rlaif-export-") as scratch:
        _stage(checkpoint, model_path, Path(scratch))
        (out / EXPORTED_FROM).unlink()
        out.rmtree()
        out.upload(scratch)
    (out / EXPORTED_FROM).write_text(marker)
    return out


def _stage(checkpoint: CheckpointRef, model_path: str | Path, staging: Path) -> None:
    """Fill the local directory `staging` with the base model's files but its weights (and
    an embedded model's BUILD.json, which describes the base weights, not these), and
    the checkpoint's policy as `model.safetensors`."""
    for item in Path(model_path).iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and \
                not item.name.endswith(".index.json") and item.name != BUILD_RECORD:
            shutil.copy2(item, staging / item.name)
    with (checkpoint.path / POLICY_FILE).local_copy() as source:
        _place_weights(source, staging / "model.safetensors")


def _place_weights(source: Path, target: Path) -> None:
    """The checkpoint's policy file as `target`: a hard link (no copy, and it outlives the
    checkpoint's pruning) when it carries the `format` metadata loaders need, as the trainer
    writes it; a copy across filesystems; rewritten with that metadata otherwise."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != "pt":
        save_file(load_file(str(source)), str(target), metadata={"format": "pt"})
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def checkpoint_of(run_dir: Location, iteration: int | None) -> CheckpointRef:
    """The run's checkpoint of `iteration` (None: the newest); ValueError names those kept."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ValueError(f"{run_dir} holds no complete checkpoint")
    if iteration is None:
        return checkpoints[-1]
    for checkpoint in checkpoints:
        if checkpoint.iteration == iteration:
            return checkpoint
    kept = [c.iteration for c in checkpoints]
    raise ValueError(f"{run_dir} keeps no checkpoint of iteration {iteration}; it keeps "
                     f"iterations {kept} (trainer.keep_checkpoints)")


def refresh_run_policy(run_dir: Location, model_path: str | Path) -> StoragePath | None:
    """Rewrite `run_dir/policy/` from the newest checkpoint if it is newer than the one
    there; returns the directory when written."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return None
    out = StoragePath.of(run_dir) / "policy"
    marker = out / EXPORTED_FROM
    if marker.is_file() and marker.read_text() == _marker(checkpoints[-1].iteration):
        return None
    return export_policy(checkpoints[-1], model_path, out)
