"""The collective transport: rank 0 broadcasts the weights over a torch.distributed group
(NCCL between GPUs, gloo on CPU: `rlaif_ray.sync.collective`) to every engine worker of
every generator; the driver forms the group, and resends a version from the restored rank 0
when its sender died."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from rlaif_ray.errors import WeightSyncError
from rlaif_ray.sync.transports.base import Publication
from rlaif_ray.sync.update import BroadcastUpdate, PolicyUpdate, Sender

if TYPE_CHECKING:
    from rlaif_ray.rollout.pool import GeneratorPool, SyncReport
    from rlaif_ray.train.trainer import TrainerRun

logger = logging.getLogger(__name__)


class CollectiveTransport:
    """`generator.sync_transport: collective`."""

    update_type = BroadcastUpdate
    # After a broadcast that went through, rank 0 puts a copy for restarted generators to
    # catch up from; the exchange hands it to the policy store once the driver verified it.
    forwards_payloads = True

    def publish(self, publication: Publication) -> None:
        """Post the layout and where rank 0 serves its groups' rendezvous (served before the
        address is out: `serve_rendezvous`), wait for the group the driver forms with the
        generators, broadcast, then put the copy for restarted generators."""
        import ray

        from rlaif_ray.sync.collective import layout_of, open_group, send, serve_rendezvous
        from rlaif_ray.waits import bounded_get

        pub, config = publication, publication.config
        host = ray.util.get_node_ip_address()
        sender = Sender(host, serve_rendezvous(host, config.sync_timeout_s), os.getpid())
        pub.post(BroadcastUpdate(pub.nbytes, pub.probe, pub.metrics,
                                 layout=layout_of(pub.state), sender=sender))
        pub.fault("publish")
        # A restored rank 0 may wait out a failed sync first (the driver resends once the
        # generators' wait ended), hence the sync timeout on top.
        group = bounded_get(pub.exchange.broadcast_group.remote(pub.version),
                            config.stall_timeout_s + config.sync_timeout_s,
                            f"the driver's broadcast group for policy version {pub.version}")
        if group is None:  # a replay after a restore: the generators serve this version
            return
        try:
            joined = open_group(group, 0)
            pub.fault("broadcast")
            send(joined, pub.state, config.sync_bucket_bytes, pub.device)
        except Exception as err:  # the receivers fail too: the driver reports it, forms anew
            logger.error("broadcast of policy version %d to %s failed: %r", pub.version,
                         group.name, err)
            return  # nothing for restarted generators to catch up to
        finally:  # this process is alive: a failed sync is not for a restored sender to redo
            pub.exchange.sent.remote(pub.version, os.getpid())
        pub.exchange.put_payload.remote(pub.version, pub.hold())

    def deliver(self, update: PolicyUpdate, version: int, generators: GeneratorPool,
                trainer: TrainerRun,
                say: Callable[[str], None]) -> tuple[SyncReport, PolicyUpdate]:
        """Have the generators join the group and rank 0 send; when the broadcast failed
        because its sender died, take the restored rank 0's update and send it anew (`say`
        tells the user)."""
        while True:
            assert isinstance(update, BroadcastUpdate)
            sender = update.sender
            try:
                report = generators.receive_broadcast(
                    update.layout, update.bytes, version, update.probe, sender,
                    functools.partial(trainer.start_broadcast, version,
                                      sender_pid=sender.pid))
            except WeightSyncError:
                if not trainer.sender_lost(version, sender.pid):
                    raise
                say(f"iteration {version - 1}: trainer rank 0 restarted mid-sync; resending "
                    f"policy version {version}")
                update = trainer.update(version)  # the restored rank 0 trains it again
                continue
            trainer.synced(version, update.probe)  # its payload may go to the policy store
            return report, update
