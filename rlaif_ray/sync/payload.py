"""State dicts as object-store payloads: flat uint8 numpy views (zero-copy `ray.get`),
re-viewed with their dtype and shape on arrival."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class TensorBytes:
    dtype: str  # torch dtype name, e.g. "bfloat16"
    shape: tuple[int, ...]
    data: np.ndarray  # uint8, flat


def to_payload(state_dict: dict[str, torch.Tensor]) -> dict[str, TensorBytes]:
    """Encode `state_dict` as uint8 views of its tensors (no copy for contiguous CPU tensors)."""
    import torch

    payload = {}
    for name, tensor in state_dict.items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        payload[name] = TensorBytes(str(flat.dtype).removeprefix("torch."),
                                    tuple(tensor.shape), flat.view(torch.uint8).numpy())
    return payload


def from_payload(payload: dict[str, TensorBytes]) -> dict[str, torch.Tensor]:
    """Decode a payload back to tensors sharing the payload's memory."""
    import torch

    state_dict = {}
    with warnings.catch_warnings():
        # Object-store arrays are read-only; vLLM copies them into its own parameters.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        for name, item in payload.items():
            raw = torch.from_numpy(item.data)
            state_dict[name] = raw.view(getattr(torch, item.dtype)).reshape(item.shape)
    return state_dict


def payload_bytes(payload: dict[str, TensorBytes]) -> int:
    """Total size of a payload's tensor data in bytes."""
    return sum(item.data.nbytes for item in payload.values())
