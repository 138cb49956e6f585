"""How an export places a checkpoint's weights (no Ray, real safetensors files)."""

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rlaif_ray.export import _place_weights


def test_trainer_written_weights_are_linked_not_copied(tmp_path):
    source = tmp_path / "policy.safetensors"
    save_file({"w": torch.arange(6.0)}, str(source), metadata={"format": "pt"})
    _place_weights(source, tmp_path / "model.safetensors")
    assert (tmp_path / "model.safetensors").stat().st_ino == source.stat().st_ino
    source.unlink()  # the checkpoint is pruned: the export keeps its weights
    assert torch.equal(load_file(str(tmp_path / "model.safetensors"))["w"], torch.arange(6.0))


def test_weights_without_format_metadata_are_rewritten_with_it(tmp_path):
    source = tmp_path / "policy.safetensors"
    save_file({"w": torch.ones(3)}, str(source))  # a checkpoint from before the metadata
    target = tmp_path / "model.safetensors"
    _place_weights(source, target)
    with safe_open(str(target), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    assert torch.equal(load_file(str(target))["w"], torch.ones(3))
