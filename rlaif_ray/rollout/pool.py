"""The generator pool: named generator actors in their own resource pool.

The driver spreads prompt batches over replicas and receives results as they finish (no
barrier per call), and pushes new policy weights to every replica with a bounded wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
from omegaconf import DictConfig

from rlaif_ray.cluster import PoolSpec, ResourcePool, bundle_for, reserve_pool
from rlaif_ray.data.prompts import Prompt
from rlaif_ray.data.records import Candidate
from rlaif_ray.lora import LoraSpec
from rlaif_ray.model_source import ModelSource, model_source
from rlaif_ray.replicas import ReplicaSet
from rlaif_ray.rollout.generator import Generator, SamplingSpec
from rlaif_ray.sync.collective import GroupSpec, TensorLayout, backend_for, receiver_ranks
from rlaif_ray.sync.payload import payload_bytes, to_payload
from rlaif_ray.sync.policy_store import PolicyStore, store_name
from rlaif_ray.sync.probe import (
    SyncProbe,
    WeightSyncError,
    probe_token_ids,
    probe_tolerance,
    reference_probe,
)
from rlaif_ray.sync.update import Sender
from rlaif_ray.vllm_engine import EngineSpec, engine_env
from rlaif_ray.waits import bounded_get

if TYPE_CHECKING:  # the driver imports torch only once it handles weights
    import torch


@dataclass
class SyncReport:
    """Outcome of one weight push to every replica."""

    version: int
    bytes: int
    seconds: float
    max_probe_gap: float | None
    replicas: list[dict[str, Any]]
    group: str | None = None  # the broadcast group (collective transport)


def generator_pool_spec(cfg: DictConfig) -> PoolSpec:
    """The generator pool's resources from config."""
    gen = cfg.generator
    return PoolSpec("generator", gen.replicas, bundle_for(gen.resources), gen.placement_strategy)


def _batches(prompts: Iterable[Prompt], size: int) -> Iterator[list[dict[str, str]]]:
    batch: list[dict[str, str]] = []
    for p in prompts:
        batch.append({"prompt_id": p.prompt_id, "prompt": p.prompt})
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _source(model: str | ModelSource, cache: str | None) -> ModelSource:
    """The policy for every node: as given, or config value `model` (an embedded model
    reaches each node's cache, or `cache`, from the driver's)."""
    return model if isinstance(model, ModelSource) else model_source(model, "generator.model",
                                                                     cache)


class GeneratorPool:
    """Generator replicas `<name>-<i>` serving the policy; see `generate_stream`."""

    def __init__(self, gen_cfg: DictConfig, pool: ResourcePool, model: str | ModelSource,
                 seed: int,
                 name: str = "generator", sync_backend: str = "gloo",
                 stall_timeout_s: float = 300.0, wait: bool = True,
                 lora: LoraSpec | None = None) -> None:
        self.cfg = gen_cfg
        self.name = name
        self.sync_backend = sync_backend  # of the collective transport
        self.lora = lora or LoraSpec()  # the policy's adapter (a LoRA run's generators)
        self._group: GroupSpec | None = None
        self._group_members: tuple | None = None
        self._group_epoch = 0
        source = _source(model, None)
        self.model_path = source.path
        self.store = ray.remote(PolicyStore).options(
            name=store_name(name), num_cpus=0, get_if_exists=True).remote()
        self.replicas = ReplicaSet(
            Generator, name,
            lambda i, replica: (replica, EngineSpec.from_config(gen_cfg, source, seed + i,
                                                                self.lora),
                                store_name(name), stall_timeout_s),
            env=engine_env(gen_cfg),
            max_inflight=gen_cfg.max_inflight_per_replica, pool=pool,
            stall_timeout_s=stall_timeout_s)
        self.names = self.replicas.names
        self.version = 0
        self.owned_resources: ResourcePool | None = None
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until every replica's engine has loaded (surfaces start-up errors)."""
        self.replicas.wait_ready()

    @classmethod
    def from_config(cls, cfg: DictConfig, model: str | ModelSource,
                    wait: bool = True) -> GeneratorPool:
        """Reserve the generator resource pool from `cfg` and start its replicas there on
        `model` (the config's `generator.model`, or its source), and with `wait`, wait for
        their engines; the pool owns the reservation and releases it on `shutdown`."""
        resources = reserve_pool(generator_pool_spec(cfg), cfg.ray.pool_timeout_s)
        try:
            pool = cls(cfg.generator, resources, _source(model, cfg.cache_dir), cfg.run.seed,
                       sync_backend=backend_for(cfg.generator.sync_backend,
                                                cfg.trainer.use_gpu),
                       stall_timeout_s=cfg.run.stall_timeout_s, wait=wait,
                       lora=LoraSpec.from_section(cfg.trainer.lora))
        except BaseException:
            resources.release()
            raise
        pool.owned_resources = resources
        return pool

    def generate_stream(self, prompts: Iterable[Prompt], iteration: int = 0,
                        sampling: SamplingSpec | None = None) -> Iterator[list[Candidate]]:
        """Yield candidate batches as replicas finish them, keeping each replica's queue at
        `max_inflight_per_replica` requests."""
        sampling = sampling or SamplingSpec.from_config(self.cfg)
        pending = _batches(prompts, self.cfg.batch_size)
        inflight: list[ray.ObjectRef] = []

        def fill() -> None:
            while self.replicas.has_capacity():
                batch = next(pending, None)
                if batch is None:
                    return
                inflight.append(self.replicas.submit("generate", batch, sampling, iteration))

        fill()
        try:
            while inflight:
                done = self.replicas.wait_any(inflight)
                inflight.remove(done)
                self.replicas.finished(done)
                rows = ray.get(done)
                fill()
                yield rows
        finally:  # a stall or an early stop: these requests are given up
            for ref in inflight:
                self.replicas.finished(ref)

    def generate(self, prompts: Iterable[Prompt], iteration: int = 0,
                 sampling: SamplingSpec | None = None) -> list[Candidate]:
        """All candidates for `prompts` (order of completion)."""
        return [row for batch in self.generate_stream(prompts, iteration, sampling)
                for row in batch]

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """Call `method` on every replica and return their answers in replica order."""
        return self.replicas.call_all(method, *args)

    def reference_probe(self, state_dict: dict[str, torch.Tensor]) -> SyncProbe:
        """The expected probe for `state_dict`, computed here with the Hugging Face model."""
        from transformers import AutoTokenizer

        ids = probe_token_ids(AutoTokenizer.from_pretrained(self.model_path))
        return reference_probe(self.model_path, state_dict, ids,
                               probe_tolerance(self.cfg, "float32"), self.lora)

    def update_weights(self, state_dict: dict[str, torch.Tensor], version: int,
                       probe: SyncProbe | None = None) -> SyncReport:
        """Load `state_dict` into every replica as policy `version`, verified by `probe` (the
        sender's log-probs; computed here if not given). Fails loudly on error or timeout."""
        start = time.perf_counter()
        probe = probe or self.reference_probe(state_dict)
        payload = to_payload(state_dict)
        return self.push(ray.put(payload), payload_bytes(payload), version, probe, start)

    def push(self, payload_ref: ray.ObjectRef, nbytes: int, version: int, probe: SyncProbe,
             start: float | None = None) -> SyncReport:
        """Load the object-store payload `payload_ref` (see `rlaif_ray.sync.payload`) into
        every replica as policy `version`, verified by `probe`; the replicas read it
        zero-copy, so the trainer can put it once and nothing is copied on the way."""
        start = time.perf_counter() if start is None else start
        refs = {r.update_weights.remote(payload_ref, version, probe): name
                for r, name in zip(self.replicas.actors, self.names, strict=True)}
        results = self._await_sync(refs, version)
        bounded_get(self.store.put.remote(version, [payload_ref], probe),  # what a restart loads
                    self.replicas.stall_timeout_s, f"the {self.name} policy store")
        return self._report(version, nbytes, start, results)

    def receive_broadcast(self, layout: list[TensorLayout], nbytes: int, version: int,
                          probe: SyncProbe, sender: Sender,
                          start_sender: Callable[[GroupSpec], None]) -> SyncReport:
        """Policy `version` by collective broadcast: every replica joins the group (formed
        again when the sender or a replica process changed, or the last broadcast failed),
        then `start_sender(group)` has the trainer's rank 0 send `layout`'s tensors."""
        start = time.perf_counter()
        firsts, world_size = receiver_ranks(len(self.names), self.cfg.tensor_parallel_size)
        members = (sender.pid, tuple(info["pid"] for info in self.call_all("info")))
        group = self._group
        if group is None or members != self._group_members:
            self._group_epoch += 1
            group = self._group = GroupSpec(f"{self.name}-weights-{self._group_epoch}",
                                            sender.host, sender.port,
                                            world_size, self.sync_backend,
                                            self.cfg.sync_timeout_s, sender.pid)
            self._group_members = members
        bucket_bytes = self.cfg.sync_bucket_mb << 20
        refs = {r.receive_weights.remote(group, first, layout, bucket_bytes,
                                         version, probe): name
                for first, r, name in zip(firsts, self.replicas.actors, self.names,
                                          strict=True)}
        start_sender(group)
        try:
            results = self._await_sync(refs, version)
        except WeightSyncError:
            self._group_members = None  # never reuse a group a broadcast failed in
            raise
        report = self._report(version, nbytes, start, results)
        report.group = group.name
        return report

    def _await_sync(self, refs: dict[ray.ObjectRef, str], version: int) -> list[dict[str, Any]]:
        """Every replica's sync result, or WeightSyncError naming the late or failed ones."""
        timeout = self.cfg.sync_timeout_s
        done, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        if late:
            raise WeightSyncError(
                f"weight sync to version {version} timed out after {timeout:g}s on "
                f"{sorted(refs[r] for r in late)}")
        results = []
        for ref in done:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                raise WeightSyncError(f"weight sync to version {version} failed on "
                                      f"{refs[ref]}: {err}") from err
        self.version = version
        return results

    @staticmethod
    def _report(version: int, nbytes: int, start: float,
                results: list[dict[str, Any]]) -> SyncReport:
        gaps = [r["probe_gap"] for r in results if r["probe_gap"] is not None]
        return SyncReport(version, nbytes, time.perf_counter() - start,
                          max(gaps) if gaps else None,
                          sorted(results, key=lambda r: r["replica"]))

    def shutdown(self) -> None:
        self.replicas.shutdown()
        ray.kill(self.store)
        if self.owned_resources is not None:
            self.owned_resources.release()
