"""The policy store: a named actor holding the latest verified policy weights (a reference
to their object-store payload, with the sender's checksums and probe), so a generator that
restarts after a crash loads and verifies the current version before it serves anything.
It also owns the trainer's payloads (`hold`): an object lives as long as its owner, and the
store outlives any trainer worker."""

from __future__ import annotations

from typing import Any


def store_name(pool: str) -> str:
    return f"{pool}-policy"


class PolicyStore:
    """Body of the `<pool>-policy` actor."""

    def __init__(self) -> None:
        self.version = 0
        self.payload: list[Any] = []  # [ObjectRef] (a list keeps it a reference)
        self.probe: Any = None  # the SyncProbe the payload must pass

    def put(self, version: int, payload: list[Any], probe: Any) -> None:
        """Record policy `version` (already verified on every replica)."""
        if version > self.version:
            self.version, self.payload, self.probe = version, payload, probe

    def hold(self, payload: Any) -> list[Any]:
        """Put `payload` into the object store as this actor's own object; returns [ref]."""
        import ray

        return [ray.put(payload)]

    def latest(self) -> tuple[int, list[Any], Any]:
        return self.version, self.payload, self.probe
