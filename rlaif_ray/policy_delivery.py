"""The driver's side of weight sync: bring every generator to the trainer's new policy
version by the transport the trainer used (`rlaif_ray.sync.update`), and tell the trainer
it went through. The trainer's side is `rlaif_ray.train.worker._publish_policy`; the
replicas' is `rlaif_ray.rollout.generator`."""

from __future__ import annotations

import functools
from collections.abc import Callable

from rlaif_ray.errors import WeightSyncError
from rlaif_ray.rollout.pool import GeneratorPool, SyncReport
from rlaif_ray.sync.update import BroadcastUpdate, PayloadUpdate, PolicyUpdate
from rlaif_ray.train.trainer import TrainerRun


def deliver_policy(update: PolicyUpdate, version: int, generators: GeneratorPool,
                   trainer: TrainerRun,
                   say: Callable[[str], None]) -> tuple[SyncReport, PolicyUpdate]:
    """Bring every generator to policy `version`; returns the report and the update the
    generators now serve (a restored rank 0's, when the sender died mid-broadcast, which
    `say` tells the user)."""
    if isinstance(update, PayloadUpdate):
        [payload_ref] = update.payload
        report = generators.push(payload_ref, update.bytes, version, update.probe)
        trainer.synced(version)
        return report, update
    while True:
        if not isinstance(update, BroadcastUpdate):
            raise TypeError(f"unknown policy update {type(update).__name__}")
        sender = update.sender
        try:
            report = generators.receive_broadcast(
                update.layout, update.bytes, version, update.probe, sender,
                functools.partial(trainer.start_broadcast, version, sender_pid=sender.pid))
        except WeightSyncError:
            if not trainer.sender_lost(version, sender.pid):
                raise
            say(f"iteration {version - 1}: trainer rank 0 restarted mid-sync; resending "
                f"policy version {version}")
            update = trainer.update(version)  # the restored rank 0 trains it again
            continue
        trainer.synced(version, update.probe)  # its payload may go to the policy store
        return report, update
