"""The exchange between the driver and the Ray Train workers: a named async actor holding
each iteration's training batch (keyed by iteration, so a restarted worker replays exactly)
and each new policy version's weights (or, with the collective transport, their layout and the
group to broadcast them to), probe and training metrics."""

from __future__ import annotations

import asyncio
from typing import Any

STORE_NAME = "rlaif-train-exchange"


class TrainExchange:
    """Body of the named exchange actor."""

    def __init__(self) -> None:
        self._batches: dict[int, list[dict[str, Any]]] = {}
        self._updates: dict[int, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._workers: dict[int, int] = {}
        self._broadcasts: dict[int, Any] = {}
        self._synced = 0  # the newest version every generator serves

    async def register_worker(self, rank: int, pid: int) -> None:
        """A (re)started train worker announces itself (rank -> process id)."""
        self._workers[rank] = pid

    async def workers(self) -> dict[int, int]:
        return dict(self._workers)

    async def put_batch(self, iteration: int, samples: list[dict[str, Any]]) -> None:
        async with self._changed:
            self._batches[iteration] = samples
            self._changed.notify_all()

    async def get_batch(self, iteration: int) -> list[dict[str, Any]]:
        async with self._changed:
            await self._changed.wait_for(lambda: iteration in self._batches)
            return self._batches[iteration]

    async def put_update(self, version: int, update: dict[str, Any]) -> None:
        """Rank 0 posts policy `version`: {payload: [ObjectRef], bytes, probe, metrics}. A
        version the generators already serve (a worker restored from an older checkpoint
        replays it) is dropped."""
        async with self._changed:
            if version <= self._synced:
                return
            self._updates[version] = update
            self._batches = {k: v for k, v in self._batches.items() if k >= version - 1}
            self._changed.notify_all()

    async def get_update(self, version: int) -> dict[str, Any]:
        async with self._changed:
            await self._changed.wait_for(lambda: version in self._updates)
            return self._updates.pop(version)

    async def start_broadcast(self, version: int, group: Any) -> None:
        """The driver has the generators waiting in `group` (a GroupSpec) for `version`."""
        async with self._changed:
            self._broadcasts[version] = group
            self._changed.notify_all()

    async def broadcast_group(self, version: int) -> Any:
        """Rank 0 waits for the group to broadcast policy `version` to; None when the
        generators serve that version already (a replay after a restore)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: version in self._broadcasts or version <= self._synced)
            return self._broadcasts.pop(version, None)

    async def synced(self, version: int) -> None:
        """The driver: every generator serves policy `version` now."""
        async with self._changed:
            self._synced = max(self._synced, version)
            self._broadcasts = {k: v for k, v in self._broadcasts.items() if k > version}
            self._changed.notify_all()
