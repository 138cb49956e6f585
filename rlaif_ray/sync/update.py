"""A trainer's new policy version on its way to the generators: what rank 0 posts to the
train exchange and the driver delivers, one type per transport
(`generator.sync_transport`). Both carry the policy's size, its probe (log-probs and
per-tensor checksums the generators must reproduce) and the update's training metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sender:
    """Where the trainer's rank 0 broadcasts from: its node, the port of the rendezvous it
    serves (`rlaif_ray.sync.collective.serve_rendezvous`), its process."""

    host: str
    port: int
    pid: int


@dataclass
class PolicyUpdate:
    """One policy version from the trainer: `bytes` of weights, the `probe` the generators
    verify it by (`rlaif_ray.sync.probe.SyncProbe`), the update's `metrics`."""

    bytes: int
    probe: Any
    metrics: dict[str, Any]


@dataclass
class PayloadUpdate(PolicyUpdate):
    """Object-store transport: the weights as one payload (`[ObjectRef]`, owned by the
    policy store so it outlives its sender), read zero-copy by every generator."""

    payload: list[Any]


@dataclass
class BroadcastUpdate(PolicyUpdate):
    """Collective transport: the tensors' `layout`, sent by `sender` once the driver has
    formed the group with the generators."""

    layout: list[Any]
    sender: Sender
