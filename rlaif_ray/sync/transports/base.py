"""What every weight transport implements (`Transport`: the trainer's `publish`, the
driver's `deliver`) and what rank 0 hands it (`Publication`). The registry loads without
Ray (the CLI lists the transports before `submit` sets Ray's auth mode)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rlaif_ray.sync.update import PolicyUpdate

if TYPE_CHECKING:  # the driver imports torch only once it handles weights
    import torch

    from rlaif_ray.rollout.pool import GeneratorPool, SyncReport
    from rlaif_ray.sync.probe import SyncProbe
    from rlaif_ray.train.trainer import TrainerRun
    from rlaif_ray.train.worker_config import WorkerConfig


@dataclass(frozen=True)
class Publication:
    """Policy `version` on rank 0 after its update: the full weights (`state`), their
    `probe`, the update's `metrics`; the `exchange` it is posted to, the worker's `config`,
    and `fault(point)`, the test seam of `rlaif_ray.faults`."""

    exchange: Any
    config: WorkerConfig
    version: int
    metrics: dict[str, Any]
    probe: SyncProbe
    state: dict[str, torch.Tensor]
    device: torch.device
    fault: Callable[[str], None]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state.values())

    def post(self, update: PolicyUpdate) -> None:
        """Post the update to the train exchange, where the driver takes it."""
        from rlaif_ray.waits import bounded_get

        bounded_get(self.exchange.put_update.remote(self.version, update),
                    self.config.stall_timeout_s,
                    f"the train exchange (policy version {self.version})")

    def hold(self) -> list[Any]:
        """The weights as one object-store payload ([ObjectRef]) owned by the policy store
        actor, so that it outlives this process."""
        import ray

        from rlaif_ray.sync.payload import to_payload
        from rlaif_ray.waits import bounded_get

        store = ray.get_actor(self.config.policy_store, namespace=self.config.namespace)
        return bounded_get(store.hold.remote(to_payload(self.state)),
                           self.config.stall_timeout_s,
                           f"the policy store (holding policy version {self.version})")


class Transport(Protocol):
    """One way (`generator.sync_transport`) of bringing the generators to a policy version."""

    @property
    def update_type(self) -> type[PolicyUpdate]:
        """What its `publish` posts."""

    @property
    def forwards_payloads(self) -> bool:
        """Whether the exchange hands the copies rank 0 puts to the policy store."""

    def publish(self, publication: Publication) -> None:
        """Rank 0's side: hand the new policy over (post its update, and send it)."""

    def deliver(self, update: PolicyUpdate, version: int, generators: GeneratorPool,
                trainer: TrainerRun,
                say: Callable[[str], None]) -> tuple[SyncReport, PolicyUpdate]:
        """The driver's side: bring every generator to policy `version`; returns the report
        and the update the generators now serve."""
