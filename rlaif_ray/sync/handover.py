"""The bookkeeping of handing policy versions from the trainer to the generators, as a pure
state machine (no Ray, no asyncio): the train exchange (`rlaif_ray.train.exchange`) holds
one and only adds the waiting.

A version is posted by the trainer's rank 0 (`posted`); with the collective transport the
driver forms a group and asks that sender to broadcast (`start`), rank 0 takes the group
(`group_for`) and reports its send's end (`ended`); after a failed broadcast the driver asks
whether the sender died (`sender_lost`). Once every generator serves a version (`synced`)
everything up to it is forgotten, and a broadcast version's object-store copy goes to the
policy store once both the copy and the driver's verified probe are in (`ready_payloads`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlaif_ray.sync.update import BroadcastUpdate, PolicyUpdate

# The group rank 0 is told to use: not yet known; or no group (the version is served).
PENDING = object()


@dataclass
class Handover:
    """Where each policy version is on its way to the generators."""

    synced: int = 0  # the newest version every generator serves
    updates: dict[int, PolicyUpdate] = field(default_factory=dict)  # posted, not yet taken
    groups: dict[int, Any] = field(default_factory=dict)  # version -> its broadcast group
    senders: dict[int, int] = field(default_factory=dict)  # version -> pid that posted it
    sent: set[tuple[int, int]] = field(default_factory=set)  # (version, pid): send ended
    payloads: dict[int, Any] = field(default_factory=dict)  # broadcast versions' copies
    probes: dict[int, Any] = field(default_factory=dict)  # verified versions' probes

    def posted(self, version: int, update: PolicyUpdate) -> bool:
        """Rank 0 posts `version`. False, and dropped, when the generators serve it already
        (a worker restored from an older checkpoint replays it); a group formed for an
        earlier sender of `version` is forgotten."""
        if version <= self.synced:
            return False
        self.updates[version] = update
        if isinstance(update, BroadcastUpdate):
            self.senders[version] = update.sender.pid
            self.groups.pop(version, None)
        return True

    def start(self, version: int, group: Any, sender_pid: int) -> bool:
        """The driver has the generators waiting in `group` for `version` from rank 0
        process `sender_pid`. False, and ignored, when another process posted `version`
        since (that rank 0 died and a restored one posted the version again)."""
        if self.senders.get(version, sender_pid) != sender_pid:
            return False
        self.groups[version] = group
        return True

    def group_for(self, version: int) -> Any:
        """What rank 0 broadcasts `version` to: its group (taken), None when the generators
        serve that version already (a replay after a restore), or PENDING."""
        if version in self.groups:
            return self.groups.pop(version)
        return None if version <= self.synced else PENDING

    def ended(self, version: int, pid: int) -> None:
        """Rank 0 (process `pid`) ended its broadcast of `version`, through or failed."""
        self.sent.add((version, pid))

    def sender_lost(self, version: int, pid: int, rank0_pid: int | None) -> bool | None:
        """After a failed broadcast of `version` from `pid`, rank 0 being `rank0_pid` now:
        True when another process holds rank 0 (it replays and posts `version` again),
        False when `pid` ended its send (alive: the receivers failed), None: not known
        yet."""
        if (version, pid) in self.sent:
            return False
        if rank0_pid is not None and rank0_pid != pid:
            return True
        return None

    def add_payload(self, version: int, payload: Any) -> list[tuple[int, Any, Any]]:
        """Rank 0's object-store copy of broadcast `version`; returns what is ready for the
        policy store (see `ready_payloads`)."""
        self.payloads[version] = payload
        return self.ready_payloads()

    def synced_to(self, version: int, probe: Any = None) -> list[tuple[int, Any, Any]]:
        """Every generator serves `version`, verified by `probe` (a broadcast version's:
        its payload may follow); what it supersedes is forgotten. Returns what is ready for
        the policy store."""
        self.synced = max(self.synced, version)
        self.groups = {k: v for k, v in self.groups.items() if k > version}
        self.senders = {k: v for k, v in self.senders.items() if k > version}
        self.sent = {(k, pid) for k, pid in self.sent if k > version}
        if probe is not None:
            self.probes[version] = probe
        return self.ready_payloads()

    def ready_payloads(self) -> list[tuple[int, Any, Any]]:
        """(version, payload, probe) of each broadcast version whose copy and verified
        probe are both in, removed from the ledger."""
        ready = [v for v in self.payloads if v in self.probes]
        return [(v, self.payloads.pop(v), self.probes.pop(v)) for v in ready]
