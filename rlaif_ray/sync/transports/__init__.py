"""Weight transports (`generator.sync_transport`): how a policy version goes from the
trainer's rank 0 to every generator. Each is one module with both of its sides, the
trainer's `publish` (in rank 0's Ray Train worker) and the driver's `deliver`, registered
here by name; the parts they share are their neighbours in `rlaif_ray.sync` (payloads,
the collective's groups, probes and checksums, the hand-over's state machine)."""

from __future__ import annotations

from rlaif_ray.registry import registered
from rlaif_ray.sync.transports.base import Publication, Transport
from rlaif_ray.sync.transports.collective import CollectiveTransport
from rlaif_ray.sync.transports.object_store import ObjectStoreTransport
from rlaif_ray.sync.update import PolicyUpdate

TRANSPORTS: dict[str, Transport] = {
    "object_store": ObjectStoreTransport(),
    "collective": CollectiveTransport(),
}

__all__ = ["TRANSPORTS", "Publication", "Transport", "transport", "transport_of"]


def transport(name: str) -> Transport:
    """The transport `generator.sync_transport` names."""
    return registered(TRANSPORTS, name, "weight transport")


def transport_of(update: PolicyUpdate) -> Transport:
    """The transport that posted `update`."""
    for candidate in TRANSPORTS.values():
        if isinstance(update, candidate.update_type):
            return candidate
    raise TypeError(f"no weight transport posts a {type(update).__name__}")
