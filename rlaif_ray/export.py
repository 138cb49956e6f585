"""The trained policy as a directory a user can serve: `run.dir/policy/` (the newest
checkpoint's policy, rewritten after each committed checkpoint) and `rlaif-ray export RUN_DIR
OUT [--iteration K] [--merge]`.

Full fine-tuning: the directory holds the base model's config, generation config and
tokenizer files (with the chat template) and the checkpoint's weights as
`model.safetensors`, so transformers' `from_pretrained`, a vLLM engine and vLLM's
OpenAI-compatible server load it as they would the base model.

LoRA (`trainer.lora.rank` > 0): the directory is the adapter in peft's format
(`adapter_model.safetensors`, `adapter_config.json`) with the tokenizer files, which peft's
`PeftModel.from_pretrained` and `vllm serve BASE --enable-lora --lora-modules NAME=DIR`
load; `--merge` writes a whole model directory as above, the adapter merged into the base.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from rlaif_ray.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, merged_model
from rlaif_ray.models import BUILD_RECORD
from rlaif_ray.storage import Location, StoragePath, replacing_dir
from rlaif_ray.train.checkpoints import POLICY_FILE, CheckpointRef, list_checkpoints

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
EXPORTED_FROM = "RLAIF_CHECKPOINT"  # names the checkpoint an export came from
# A base model's files an adapter directory leaves out: with them, transformers would take
# the directory for a whole model without weights.
MODEL_ONLY_FILES = ("config.json", "generation_config.json")


def _marker(iteration: int) -> str:
    """What `EXPORTED_FROM` holds for the checkpoint of `iteration`."""
    return f"iteration {iteration}\n"


def export_policy(checkpoint: CheckpointRef, model_path: str | Path,
                  out: Location, merge: bool = False) -> StoragePath:
    """Write `checkpoint`'s policy at `out`: a model directory, or a LoRA run's adapter
    (`merge`: merged into the base model at `model_path`, a model directory). Locally the
    directory is replaced whole (a reader never sees a half-written one); on an object
    store the files are replaced one by one and the `RLAIF_CHECKPOINT` marker, naming the
    iteration, is removed first and written last."""
    out = StoragePath.of(out)
    marker = _marker(checkpoint.iteration)
    if out.is_local:
        out.parent.mkdir()
        with replacing_dir(Path(out.path)) as staging:
            _stage(checkpoint, model_path, staging, merge)
            (staging / EXPORTED_FROM).write_text(marker)
        return out
    with tempfile.TemporaryDirectory(prefix="rlaif-export-") as scratch:
        _stage(checkpoint, model_path, Path(scratch), merge)
        (out / EXPORTED_FROM).unlink()
        out.rmtree()
        out.upload(scratch)
    (out / EXPORTED_FROM).write_text(marker)
    return out


def _stage(checkpoint: CheckpointRef, model_path: str | Path, staging: Path,
           merge: bool) -> None:
    """Fill the local directory `staging` with the base model's files but its weights (and
    an embedded model's BUILD.json, which describes the base weights, not these), and
    the checkpoint's policy: as `model.safetensors`, or a LoRA run's adapter (merged into
    the base weights with `merge`)."""
    adapter = checkpoint.lora_rank > 0
    for item in Path(model_path).iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and \
                not item.name.endswith(".index.json") and item.name != BUILD_RECORD and \
                not (adapter and not merge and item.name in MODEL_ONLY_FILES):
            shutil.copy2(item, staging / item.name)
    if not adapter:
        with (checkpoint.path / POLICY_FILE).local_copy() as source:
            _place_weights(source, staging / "model.safetensors")
        return
    with tempfile.TemporaryDirectory(prefix="rlaif-adapter-") as scratch:
        _adapter_dir(checkpoint, model_path, Path(scratch))
        if not merge:
            for item in Path(scratch).iterdir():
                shutil.move(item, staging / item.name)
            return
        with tempfile.TemporaryDirectory(prefix="rlaif-merged-") as merged:
            merged_model(model_path, scratch).save_pretrained(merged, safe_serialization=True)
            for item in Path(merged).iterdir():
                if item.name.endswith(WEIGHT_SUFFIXES) or item.name.endswith(".index.json"):
                    shutil.move(item, staging / item.name)


def _adapter_dir(checkpoint: CheckpointRef, model_path: str | Path, target: Path) -> None:
    """The checkpoint's adapter as a peft adapter directory at `target`, its config naming
    the base model at `model_path`."""
    with (checkpoint.path / POLICY_FILE).local_copy() as source:
        _place_weights(source, target / ADAPTER_WEIGHTS)
    with (checkpoint.path / ADAPTER_CONFIG).local_copy() as source:
        config = json.loads(Path(source).read_text())
    config["base_model_name_or_path"] = str(model_path)
    (target / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


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
