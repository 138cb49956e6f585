"""Checkpoints load with a safe loader: tensors and DeepSpeed's own state types, nothing
that could run code on unpickling."""

import pickle

import pytest
import torch

from rlaif_ray.train.deepspeed_engines import safe_checkpoint_engine


class Payload:
    def __reduce__(self):  # would run a command if unpickled unsafely
        return (print, ("pwned",))


def test_safe_loader_reads_tensors_and_deepspeed_state(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2), "zero_stage": ZeroStageEnum.weights,
                "loss_scaler": LossScaler(1.0), "step": 3}, path)
    state = safe_checkpoint_engine(None).load(str(path), map_location="cpu")
    assert torch.equal(state["w"], torch.ones(2)) and state["step"] == 3
    assert state["zero_stage"] == ZeroStageEnum.weights


def test_safe_loader_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        safe_checkpoint_engine(None).load(str(path), map_location="cpu")
