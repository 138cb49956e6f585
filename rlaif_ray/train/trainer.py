"""The Ray Train side: a `TorchTrainer` running `train_loop_per_worker` for all iterations,
in a background thread of the driver, fed and drained through the exchange actor."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import ray
from omegaconf import DictConfig, OmegaConf

from rlaif_ray.cluster import PoolSpec
from rlaif_ray.errors import TrainerError, WeightSyncError
from rlaif_ray.sync.collective import GroupSpec
from rlaif_ray.sync.policy_store import store_name
from rlaif_ray.train.store import STORE_NAME, TrainExchange
from rlaif_ray.train.worker import train_loop_per_worker


def trainer_pool_spec(cfg: DictConfig) -> PoolSpec:
    """The trainer's resources: `trainer.workers` x one worker's bundle (Ray Train places
    them in its own placement group)."""
    tr = cfg.trainer
    bundle = {"CPU": float(tr.resources.num_cpus),
              **{k: float(v) for k, v in tr.resources.custom.items()}}
    if tr.use_gpu:
        bundle["GPU"] = max(float(tr.resources.num_gpus), 1.0)
    return PoolSpec("trainer", tr.workers, bundle)


def build_trainer(cfg: DictConfig, model_path: str, probe_token_ids: list[int], pad_id: int,
                  resume_dir: str | None = None, max_failures: int = 2):
    """A TorchTrainer for `cfg.trainer`, checkpointing under `run.dir/checkpoints`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    tr = cfg.trainer
    resources = trainer_pool_spec(cfg).bundle
    loop_config: dict[str, Any] = {
        "trainer": OmegaConf.to_container(tr, resolve=True),
        "model_path": model_path,
        "iterations": cfg.run.iterations,
        "seed": cfg.run.seed,
        "namespace": ray.get_runtime_context().namespace,
        "policy_store": store_name("generator"),
        "sync_transport": cfg.generator.sync_transport,
        "sync_bucket_bytes": cfg.generator.sync_bucket_mb << 20,
        "pad_id": pad_id,
        "temperature": cfg.generator.temperature,
        "probe_token_ids": probe_token_ids,
        "probe_tolerance": cfg.generator.sync_probe_tolerance,
        "resume_dir": resume_dir,
    }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=tr.workers, use_gpu=tr.use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if tr.use_gpu else "gloo"),
        run_config=RunConfig(
            name="trainer",
            storage_path=str((Path(cfg.run.dir) / "checkpoints").resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=tr.keep_checkpoints),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )


class TrainerRun:
    """The trainer running in a background thread, with the exchange that feeds it."""

    def __init__(self, cfg: DictConfig, model_path: str, probe_token_ids: list[int],
                 pad_id: int, resume_dir: str | None = None) -> None:
        self.timeout_s = cfg.trainer.step_timeout_s
        self.exchange = ray.remote(TrainExchange).options(
            name=STORE_NAME, num_cpus=0, max_concurrency=64).remote()
        self.trainer = build_trainer(cfg, model_path, probe_token_ids, pad_id, resume_dir)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._fit, name="ray-train-fit", daemon=True)
        self.thread.start()

    def _fit(self) -> None:
        try:
            self.trainer.fit()
        except BaseException as err:  # surfaced to the driver by `update`
            self.error = err

    def submit(self, iteration: int, samples: list[dict[str, Any]]) -> None:
        """Hand iteration `iteration`'s training samples to the workers."""
        ray.get(self.exchange.put_batch.remote(iteration, samples))

    def update(self, version: int) -> dict[str, Any]:
        """Wait for policy `version` from the trainer: {payload: [ObjectRef], bytes, probe,
        metrics}."""
        ref = self.exchange.get_update.remote(version)
        waited = 0.0
        while True:
            ready, _ = ray.wait([ref], timeout=1.0)
            if ready:
                return ray.get(ref)
            if not self.thread.is_alive():
                raise TrainerError(f"trainer stopped before policy version {version}: "
                                   f"{self.error!r}") from self.error
            waited += 1.0
            if waited >= self.timeout_s:
                raise WeightSyncError(f"no policy version {version} from the trainer after "
                                      f"{self.timeout_s:g}s (trainer.step_timeout_s)")

    def start_broadcast(self, version: int, group: GroupSpec) -> None:
        """Have rank 0 broadcast policy `version` to `group` (collective transport)."""
        ray.get(self.exchange.start_broadcast.remote(version, group))

    def synced(self, version: int) -> None:
        """Tell the workers every generator serves policy `version` (a restored worker that
        replays it then skips its hand-over)."""
        ray.get(self.exchange.synced.remote(version))

    def close(self, grace_s: float = 60.0) -> None:
        """Wait for the trainer to finish; if it is still waiting for batches (the driver
        stopped early), remove the exchange so the workers fail and `fit` returns."""
        self.thread.join(timeout=grace_s)
        ray.kill(self.exchange)
        self.thread.join(timeout=10 * grace_s)
