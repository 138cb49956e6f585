"""The object-store transport: rank 0 puts the weights once as a payload owned by the policy
store actor (so it outlives its sender), and every generator reads it zero-copy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rlaif_ray.sync.transports.base import Publication
from rlaif_ray.sync.update import PayloadUpdate, PolicyUpdate

if TYPE_CHECKING:
    from rlaif_ray.rollout.pool import GeneratorPool, SyncReport
    from rlaif_ray.train.trainer import TrainerRun


class ObjectStoreTransport:
    """`generator.sync_transport: object_store`."""

    update_type = PayloadUpdate
    forwards_payloads = False  # the payload is the policy store's from the start

    def publish(self, publication: Publication) -> None:
        update = PayloadUpdate(publication.nbytes, publication.probe, publication.metrics,
                               payload=publication.hold())
        publication.post(update)
        publication.fault("publish")

    def deliver(self, update: PolicyUpdate, version: int, generators: GeneratorPool,
                trainer: TrainerRun,
                say: Callable[[str], None]) -> tuple[SyncReport, PolicyUpdate]:
        assert isinstance(update, PayloadUpdate)
        [payload_ref] = update.payload
        report = generators.push(payload_ref, update.bytes, version, update.probe)
        trainer.synced(version)
        return report, update
