"""What every trainer worker is told by the driver: one typed object (Ray Train's
`train_loop_config` holds it as `{"worker": WorkerConfig}`), built from the run's config by
`rlaif_ray.train.trainer.build_trainer`."""

from __future__ import annotations

from dataclasses import dataclass

from rlaif_ray.model_source import ModelSource
from rlaif_ray.train.settings import TrainerConfig


@dataclass(frozen=True)
class WorkerConfig:
    """A trainer worker's settings. `trainer` is the `trainer` config section (the update
    reads it); the rest comes from the other sections and from the driver."""

    trainer: TrainerConfig
    model: ModelSource  # the policy, found on the worker's node (`model_source`)
    iterations: int  # run.iterations
    seed: int  # run.seed
    stall_timeout_s: float  # run.stall_timeout_s: the bound on every wait for the driver
    namespace: str  # the driver's Ray namespace (its exchange and policy store live there)
    policy_store: str  # the policy store actor's name
    sync_transport: str  # generator.sync_transport
    sync_bucket_bytes: int  # generator.sync_bucket_mb, in bytes
    sync_timeout_s: float  # generator.sync_timeout_s
    temperature: float  # the generators' sampling temperature (the log-probs follow it)
    top_p: float  # the generators' top-p
    probe_tolerance: float  # how far the generators' probe log-probs may differ
    fit_dir: str  # where this fit's checkpoints are persisted (local path or URI)
    resume_path: str | None = None  # the driver's resume point, a checkpoint directory
    kill_at: str | None = None  # the test seam of `rlaif_ray.faults`
