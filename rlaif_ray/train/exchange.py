"""The exchange between the driver and the Ray Train workers: a named async actor holding
each iteration's training batch (keyed by iteration, so a restarted worker replays exactly)
and each new policy version's weights (or, with the collective transport, their layout and the
group to broadcast them to), probe and training metrics.

It also tells the driver what the trainer is doing (`status`): which iteration each worker
restored from and waits for, which batches were fetched, and how long the trainer has been
silent, so the driver never waits on a trainer that cannot make progress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rlaif_ray.sync.handover import PENDING, Handover
from rlaif_ray.sync.update import PolicyUpdate
from rlaif_ray.train.samples import TrainingSample

EXCHANGE_NAME = "rlaif-train-exchange"


class TrainExchange:
    """Body of the named exchange actor. `policy_store` names the actor that receives a
    broadcast policy's payload once the driver has verified the sync (collective transport);
    None when nobody needs it."""

    def __init__(self, policy_store: str | None = None) -> None:
        self._batches: dict[int, list[TrainingSample]] = {}
        self._handover = Handover()
        self._changed = asyncio.Condition()
        self._workers: dict[int, int] = {}
        self._restored: dict[int, int] = {}  # rank -> first iteration after its restore
        self._registered_at: dict[int, float] = {}  # rank -> wall time of its first start
        self._starts: dict[int, int] = {}  # rank -> how many processes registered as it
        self._waiting: dict[int, int] = {}  # rank -> iteration whose batch it waits for
        self._fetched: dict[int, set[int]] = {}  # iteration -> ranks that took its batch
        self._policy_store = policy_store
        self._last_heard = time.monotonic()

    def _heard(self) -> None:
        self._last_heard = time.monotonic()

    async def register_worker(self, rank: int, pid: int, first_iteration: int = 0) -> int:
        """A (re)started train worker announces itself (rank -> process id) and the first
        iteration it will train after restoring its checkpoint; returns how many processes
        held this rank before it (0 for the first)."""
        self._heard()
        async with self._changed:
            self._workers[rank] = pid
            self._restored[rank] = first_iteration
            self._registered_at.setdefault(rank, time.time())
            self._starts[rank] = self._starts.get(rank, 0) + 1
            self._changed.notify_all()
        return self._starts[rank] - 1

    async def workers(self) -> dict[int, int]:
        return dict(self._workers)

    async def status(self) -> dict[str, Any]:
        """What the trainer is doing: {workers, restored, registered_at, starts, waiting,
        fetched, batches, silent_s} (see the class docstring)."""
        return {"workers": dict(self._workers), "restored": dict(self._restored),
                "registered_at": dict(self._registered_at), "starts": dict(self._starts),
                "waiting": dict(self._waiting),
                "fetched": {k: sorted(v) for k, v in self._fetched.items()},
                "batches": sorted(self._batches),
                "silent_s": time.monotonic() - self._last_heard}

    async def put_batch(self, iteration: int, samples: list[TrainingSample]) -> None:
        async with self._changed:
            self._batches[iteration] = samples
            self._changed.notify_all()

    async def get_batch(self, iteration: int, rank: int = 0) -> list[TrainingSample]:
        """A worker takes iteration `iteration`'s batch (waiting until the driver puts it)."""
        self._heard()
        async with self._changed:
            self._waiting[rank] = iteration
            await self._changed.wait_for(lambda: iteration in self._batches)
            del self._waiting[rank]
            self._fetched.setdefault(iteration, set()).add(rank)
            self._heard()
            return self._batches[iteration]

    async def checkpointed(self, iteration: int) -> None:
        """Rank 0 has persisted a checkpoint ending `iteration`: a restored worker never
        needs the batches up to it again."""
        self._heard()
        async with self._changed:
            self._batches = {k: v for k, v in self._batches.items() if k > iteration}

    async def put_update(self, version: int, update: PolicyUpdate) -> None:
        """Rank 0 posts policy `version` (see `Handover.posted`)."""
        self._heard()
        async with self._changed:
            if self._handover.posted(version, update):
                self._changed.notify_all()

    async def get_update(self, version: int) -> PolicyUpdate:
        async with self._changed:
            await self._changed.wait_for(lambda: version in self._handover.updates)
            return self._handover.updates.pop(version)

    async def start_broadcast(self, version: int, group: Any, sender_pid: int) -> bool:
        """The driver has the generators waiting in `group` (a GroupSpec) for `version`
        (see `Handover.start`)."""
        async with self._changed:
            started = self._handover.start(version, group, sender_pid)
            self._changed.notify_all()
        return started

    async def broadcast_group(self, version: int) -> Any:
        """Rank 0 waits for the group to broadcast policy `version` to; None when the
        generators serve that version already (a replay after a restore)."""
        self._heard()
        async with self._changed:
            group = PENDING
            while group is PENDING:
                group = self._handover.group_for(version)
                if group is PENDING:
                    await self._changed.wait()
            return group

    async def sent(self, version: int, pid: int) -> None:
        """Rank 0 (process `pid`) ended its broadcast of `version`, whether it went through
        or failed: it is alive, so a failed sync is the receivers' to explain."""
        async with self._changed:
            self._handover.ended(version, pid)
            self._changed.notify_all()

    async def sender_lost(self, version: int, pid: int, timeout_s: float) -> bool | None:
        """After a failed broadcast of `version` from process `pid`: True once another
        process holds rank 0 (the sender died and Ray Train restored it: it replays and
        posts `version` again), False once `pid` reported its send ended; None when neither
        happened within `timeout_s`."""
        def lost() -> bool | None:
            return self._handover.sender_lost(version, pid, self._workers.get(0))

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: lost() is not None),
                                       timeout_s)
            except TimeoutError:
                return None
            return lost()

    async def put_payload(self, version: int, payload: list[Any]) -> None:
        """Rank 0: the object-store copy of a broadcast policy `version` ([ObjectRef]); it
        goes to the policy store once the driver has verified that version."""
        self._forward(self._handover.add_payload(version, payload))

    async def synced(self, version: int, probe: Any = None) -> None:
        """The driver: every generator serves policy `version` now, verified by `probe`."""
        async with self._changed:
            ready = self._handover.synced_to(version, probe)
            self._changed.notify_all()
        self._forward(ready)

    def _forward(self, ready: list[tuple[int, Any, Any]]) -> None:
        import ray

        for version, payload, probe in ready:
            if self._policy_store is not None:
                ray.get_actor(self._policy_store).put.remote(version, payload, probe)
