"""The policy store: a named actor holding the latest verified policy weights (a reference
to their object-store payload), so a generator that restarts after a crash loads the
current version before it serves anything. It also owns the trainer's payloads (`hold`):
an object lives as long as its owner, and the store outlives any trainer worker."""

from __future__ import annotations

from typing import Any


def store_name(pool: str) -> str:
    return f"{pool}-policy"


class PolicyStore:
    """Body of the `<pool>-policy` actor."""

    def __init__(self) -> None:
        self.version = 0
        self.payload: list[Any] = []  # [ObjectRef] (a list keeps it a reference)

    def put(self, version: int, payload: list[Any]) -> None:
        if version > self.version:
            self.version, self.payload = version, payload

    def hold(self, payload: Any) -> list[Any]:
        """Put `payload` into the object store as this actor's own object; returns [ref]."""
        import ray

        return [ray.put(payload)]

    def latest(self) -> tuple[int, list[Any]]:
        return self.version, self.payload
