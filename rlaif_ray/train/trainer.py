"""The Ray Train side: a `TorchTrainer` running `train_loop_per_worker` for all iterations,
in a background thread of the driver, fed and drained through the exchange actor.

The driver's wait for each policy version is bounded by progress: it stops at once when a
worker waits for a batch the driver will never send (the trainer restored another iteration
than the driver resumes at), after `run.stall_timeout_s` when the trainer has not taken the
iteration's batch, and after `trainer.step_timeout_s` for the step as a whole."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import ray
from omegaconf import DictConfig

from rlaif_ray.cluster import PoolSpec, bundle_for, keep_ray_until_exit
from rlaif_ray.errors import StallError, TrainerError, WeightSyncError
from rlaif_ray.faults import TRAINER_ENV
from rlaif_ray.model_source import ModelSource
from rlaif_ray.sync.collective import GroupSpec
from rlaif_ray.sync.policy_store import store_name
from rlaif_ray.sync.probe import probe_tolerance
from rlaif_ray.sync.transports import transport
from rlaif_ray.sync.update import PolicyUpdate
from rlaif_ray.train.checkpoints import CheckpointRef, checkpoint_root
from rlaif_ray.train.exchange import EXCHANGE_NAME, TrainExchange
from rlaif_ray.train.samples import TrainingSample
from rlaif_ray.train.settings import settings_of
from rlaif_ray.train.worker_config import WorkerConfig
from rlaif_ray.waits import bounded_get


def trainer_pool_spec(cfg: DictConfig) -> PoolSpec:
    """The trainer's resources: `trainer.workers` x one worker's bundle (Ray Train places
    them in its own placement group). A fractional `num_gpus` stays fractional: the
    trainer can share one GPU with the generators."""
    tr = cfg.trainer
    bundle = bundle_for(tr.resources)
    if not tr.use_gpu:
        bundle.pop("GPU", None)
    elif "GPU" not in bundle:  # a GPU trainer with no share given takes a whole GPU
        bundle["GPU"] = 1.0
    return PoolSpec("trainer", tr.workers, bundle)


def fit_name() -> str:
    """A new name for each fit (Ray Train run) of the trainer: its checkpoints go to
    `run.dir/checkpoints/<name>/`, and it never restores another fit's snapshot."""
    return "trainer-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")


HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def set_health_check_interval(cfg: DictConfig) -> None:
    """Have Ray Train's controller poll the workers every `trainer.health_check_interval_s`
    (Ray Train reads the variable in the driver and hands it to its controller; a value the
    user set wins). Each worker's `report` of an iteration blocks until the controller has
    taken the one before: at Ray's default of 2 s, that wait was most of a short step."""
    os.environ.setdefault(HEALTH_CHECK_ENV, f"{cfg.trainer.health_check_interval_s:g}")


def torch_trainer_class():
    """Ray Train's TorchTrainer, less its dataset callback when it is given no datasets.

    That callback starts a dataset manager actor with every fit, and the manager Ray Data's
    autoscaling coordinator, datasets or none: two Python processes (about 3 CPU-seconds of
    every run's start-up, docs/performance.md) for shards no worker asks for, since the
    workers take their batches from the run's exchange actor (`rlaif_ray.train.exchange`)."""
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    class ExchangeFedTorchTrainer(TorchTrainer):
        """A TorchTrainer whose workers read no Ray Dataset shards."""

        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            if self.datasets:
                return callbacks
            return [c for c in callbacks if not isinstance(c, DatasetsCallback)]

    return ExchangeFedTorchTrainer


def build_trainer(cfg: DictConfig, model: ModelSource, resume: CheckpointRef | None = None):
    """A TorchTrainer for `cfg.trainer`, checkpointing under `run.dir/checkpoints/<fit>`,
    starting from `resume` (the driver's resume point) when given."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from rlaif_ray.train.worker import train_loop_per_worker

    tr = cfg.trainer
    set_health_check_interval(cfg)
    resources = trainer_pool_spec(cfg).bundle
    name = fit_name()
    storage = checkpoint_root(cfg.run.dir)
    worker = WorkerConfig(
        trainer=settings_of(tr),
        model=model,
        iterations=cfg.run.iterations,
        seed=cfg.run.seed,
        stall_timeout_s=cfg.run.stall_timeout_s,
        namespace=ray.get_runtime_context().namespace,
        policy_store=store_name("generator"),
        sync_transport=cfg.generator.sync_transport,
        sync_bucket_bytes=cfg.generator.sync_bucket_mb << 20,
        sync_timeout_s=cfg.generator.sync_timeout_s,
        temperature=cfg.generator.temperature,
        top_p=cfg.generator.top_p,
        probe_tolerance=probe_tolerance(cfg.generator, tr.dtype),
        fit_dir=str(storage / name),
        resume_path=str(resume.path) if resume is not None else None,
        kill_at=os.environ.get(TRAINER_ENV),
    )
    return torch_trainer_class()(
        train_loop_per_worker,
        train_loop_config={"worker": worker},
        scaling_config=ScalingConfig(num_workers=tr.workers, use_gpu=tr.use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if tr.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),  # a local path or a URI; Ray Train opens it
            # The driver prunes (`checkpoints.prune`): only checkpoints whose iteration is
            # committed, so a crash before a metrics line can go back to the one before.
            checkpoint_config=CheckpointConfig(num_to_keep=None),
            failure_config=FailureConfig(max_failures=tr.max_failures),
        ),
    )


def progress_error(iteration: int, status: dict[str, Any], waited_s: float,
                   since_submit_s: float, stall_s: float,
                   step_timeout_s: float) -> Exception | None:
    """Why the driver must stop waiting for iteration `iteration`'s policy, given the
    exchange's `status` (None: keep waiting). The driver puts every batch it will send
    before it waits, so a worker waiting for a batch that is not held will wait forever."""
    held = set(status["batches"])
    for rank, wanted in sorted(status["waiting"].items()):
        if wanted not in held:
            return TrainerError(
                f"trainer rank {rank} waits for the batch of iteration {wanted} (it restored "
                f"to start at iteration {status['restored'].get(rank, 0)}), but the driver is "
                f"at iteration {iteration} and holds batches {sorted(held)}")
    started = iteration in status["fetched"]
    if not started and min(since_submit_s, status["silent_s"]) >= stall_s:
        workers = status["workers"] or "none registered yet"
        return StallError(f"the trainer did not start iteration {iteration} within "
                          f"{stall_s:g}s of its batch (run.stall_timeout_s); workers "
                          f"(rank: pid): {workers}")
    if waited_s >= step_timeout_s:
        return TrainerError(f"no policy version {iteration + 1} from the trainer after "
                            f"{step_timeout_s:g}s (trainer.step_timeout_s)")
    return None


class TrainerRun:
    """The trainer running in a background thread, with the exchange that feeds it."""

    def __init__(self, cfg: DictConfig, model: ModelSource,
                 resume: CheckpointRef | None = None) -> None:
        self.timeout_s = cfg.trainer.step_timeout_s
        self.stall_s = cfg.run.stall_timeout_s
        self.workers = cfg.trainer.workers
        policy_store = (store_name("generator")
                        if transport(cfg.generator.sync_transport).forwards_payloads else None)
        self.exchange = ray.remote(TrainExchange).options(
            name=EXCHANGE_NAME, num_cpus=0, max_concurrency=64).remote(policy_store)
        self.trainer = build_trainer(cfg, model, resume)
        self.error: BaseException | None = None
        self._submitted: dict[int, float] = {}
        self.thread = threading.Thread(target=self._fit, name="ray-train-fit", daemon=True)
        self.thread.start()

    def _fit(self) -> None:
        try:
            self.trainer.fit()
        except BaseException as err:  # surfaced to the driver by `update`
            self.error = err

    def _raise_if_stopped(self, when: str) -> None:
        """TrainerError, with the trainer's own error, if its fit has ended."""
        if not self.thread.is_alive():
            raise TrainerError(f"trainer stopped {when}: {self.error!r}") from self.error

    def _call(self, ref: ray.ObjectRef, what: str) -> Any:
        return bounded_get(ref, self.stall_s, f"the train exchange ({what})")

    def submit(self, iteration: int, samples: list[TrainingSample]) -> None:
        """Hand iteration `iteration`'s training samples to the workers."""
        self._call(self.exchange.put_batch.remote(iteration, samples), "put_batch")
        self._submitted[iteration] = time.monotonic()

    def started(self, iteration: int) -> bool:
        """Whether a worker has taken iteration `iteration`'s batch."""
        status = self._call(self.exchange.status.remote(), "status")
        return iteration in status["fetched"]

    def update(self, version: int) -> PolicyUpdate:
        """Wait for policy `version` from the trainer (`rlaif_ray.sync.update`). Bounded by
        progress (see the module docstring)."""
        iteration = version - 1
        ref = self.exchange.get_update.remote(version)
        start = time.monotonic()
        while True:
            ready, _ = ray.wait([ref], timeout=1.0)
            if ready:
                return ray.get(ref)
            self._raise_if_stopped(f"before policy version {version}")
            status = self._call(self.exchange.status.remote(), "status")
            if ray.wait([ref], timeout=0)[0]:  # posted while we asked
                return ray.get(ref)
            since_submit = time.monotonic() - self._submitted.get(iteration, time.monotonic())
            error = progress_error(iteration, status, time.monotonic() - start, since_submit,
                                   self.stall_s, self.timeout_s)
            if error is not None:
                raise error

    def worker_pids(self) -> dict[int, int]:
        """The trainer's workers now: rank -> process id."""
        return self._call(self.exchange.workers.remote(), "workers")

    def restarts(self) -> int:
        """Worker processes Ray Train started in place of a dead one, in this fit."""
        starts = self._call(self.exchange.status.remote(), "status")["starts"]
        return sum(count - 1 for count in starts.values())

    def ready_at(self) -> float | None:
        """Wall time at which the last of the workers had loaded its engines and asked for
        work (None until all have)."""
        registered = self._call(self.exchange.status.remote(), "status")["registered_at"]
        return max(registered.values()) if len(registered) == self.workers else None

    def start_broadcast(self, version: int, group: GroupSpec, sender_pid: int) -> None:
        """Have rank 0 (process `sender_pid`) broadcast policy `version` to `group`
        (collective transport); WeightSyncError if another process holds rank 0 now."""
        if not self._call(self.exchange.start_broadcast.remote(version, group, sender_pid),
                          "start_broadcast"):
            raise WeightSyncError(f"policy version {version} was posted again by a restored "
                                  f"trainer rank 0 before its broadcast started")

    def sender_lost(self, version: int, pid: int) -> bool:
        """After a failed broadcast of policy `version` from rank 0 process `pid`: whether
        that process died (Ray Train restored rank 0, which trains the iteration again and
        posts `version` anew) rather than the receivers failing. Waits up to
        `run.stall_timeout_s` for either; TrainerError if the trainer stopped meanwhile."""
        deadline = time.monotonic() + self.stall_s
        while time.monotonic() < deadline:
            lost = self._call(self.exchange.sender_lost.remote(version, pid, 1.0),
                              "sender_lost")
            if lost is not None:
                return lost
            self._raise_if_stopped(f"while sending policy version {version}")
        return False

    def synced(self, version: int, probe: Any = None) -> None:
        """Tell the workers every generator serves policy `version`, verified by `probe` (a
        restored worker that replays it then skips its hand-over; a broadcast version's
        payload then goes to the policy store)."""
        self._call(self.exchange.synced.remote(version, probe), "synced")

    def close(self, grace_s: float = 60.0, wind_down_s: float = 30.0,
              abort: bool = False) -> None:
        """Wait up to `grace_s` for the trainer to finish (its last report); if it is still
        waiting for batches (the driver stopped early), remove the exchange: the workers
        then end the fit, which is given `wind_down_s` to return; a fit still running then
        is ended (`abort_fits`), as it is at once with `abort` (Ctrl-C). Ray is torn down
        after this, and must not be under a thread blocked in it: if the fit's thread has
        not returned even so, Ray is left to the end of the process
        (`keep_ray_until_exit`)."""
        self.thread.join(timeout=grace_s)
        ray.kill(self.exchange)
        if not abort:
            self.thread.join(timeout=wind_down_s)
        if self.thread.is_alive():
            abort_fits()
            self.thread.join(timeout=wind_down_s)
        if self.thread.is_alive():
            keep_ray_until_exit()


def abort_fits() -> None:
    """End every Ray Train run this process started, now: kill its controller. The workers
    it owns die with it, Ray Train's placement-group cleaner (an actor of its own) removes
    their placement group, and the fit returns at once. Ray Train keeps the controller's
    handle to itself (its own Ctrl-C handler, which aborts it, is installed only when `fit`
    runs in the main thread, and it waits for the workers), so it is found among this
    process's objects."""
    import gc

    from ray.actor import ActorHandle

    # type(), not isinstance: some objects warn when asked for their class (torch's
    # deprecated reduce_op).
    for handle in gc.get_objects():
        if (type(handle) is ActorHandle and
                handle._ray_actor_creation_function_descriptor.class_name == "TrainController"):
            ray.kill(handle)
