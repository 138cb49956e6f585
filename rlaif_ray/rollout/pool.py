"""The generator pool: named generator actors in their own resource pool.

The driver spreads prompt batches over replicas and receives results as they finish (no
barrier per call), and pushes new policy weights to every replica with a bounded wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ray
import torch
from omegaconf import DictConfig

from rlaif_ray.cluster import PoolSpec, ResourcePool, bundle_for, reserve_pool
from rlaif_ray.data.prompts import Prompt
from rlaif_ray.replicas import ReplicaSet
from rlaif_ray.rollout.generator import Generator, SamplingSpec
from rlaif_ray.sync.payload import payload_bytes, to_payload
from rlaif_ray.sync.policy_store import PolicyStore, store_name
from rlaif_ray.sync.probe import SyncProbe, WeightSyncError, probe_token_ids, reference_probe
from rlaif_ray.vllm_engine import ENGINE_ENV, EngineSpec


@dataclass
class SyncReport:
    """Outcome of one weight push to every replica."""

    version: int
    bytes: int
    seconds: float
    max_probe_gap: float | None
    replicas: list[dict[str, Any]]


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


class GeneratorPool:
    """Generator replicas `<name>-<i>` serving the policy; see `generate_stream`."""

    def __init__(self, gen_cfg: DictConfig, pool: ResourcePool, model_path: str, seed: int,
                 name: str = "generator") -> None:
        self.cfg = gen_cfg
        self.model_path = model_path
        self.store = ray.remote(PolicyStore).options(
            name=store_name(name), num_cpus=0, get_if_exists=True).remote()
        self.replicas = ReplicaSet(
            Generator, name,
            lambda i, replica: (replica, EngineSpec.from_config(gen_cfg, model_path, seed + i),
                                store_name(name)),
            env=ENGINE_ENV, max_inflight=gen_cfg.max_inflight_per_replica, pool=pool)
        self.names = self.replicas.names
        self.replicas.wait_ready()
        self.version = 0
        self.owned_resources: ResourcePool | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig, model_path: str) -> GeneratorPool:
        """Reserve the generator resource pool from `cfg` and start its replicas there; the
        pool owns the reservation and releases it on `shutdown`."""
        resources = reserve_pool(generator_pool_spec(cfg), cfg.ray.pool_timeout_s)
        try:
            pool = cls(cfg.generator, resources, model_path, cfg.run.seed)
        except BaseException:
            resources.release()
            raise
        pool.owned_resources = resources
        return pool

    def generate_stream(self, prompts: Iterable[Prompt], iteration: int = 0,
                        sampling: SamplingSpec | None = None) -> Iterator[list[dict[str, Any]]]:
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
        while inflight:
            [done], _ = ray.wait(inflight, num_returns=1)
            inflight.remove(done)
            self.replicas.finished(done)
            rows = ray.get(done)
            fill()
            yield rows

    def generate(self, prompts: Iterable[Prompt], iteration: int = 0,
                 sampling: SamplingSpec | None = None) -> list[dict[str, Any]]:
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
        return reference_probe(self.model_path, state_dict, ids, self.cfg.sync_probe_tolerance)

    def update_weights(self, state_dict: dict[str, torch.Tensor], version: int,
                       probe: SyncProbe | None = None) -> SyncReport:
        """Load `state_dict` into every replica as policy `version`, verified by `probe` (the
        sender's log-probs; computed here if not given). Fails loudly on error or timeout."""
        start = time.perf_counter()
        probe = probe or self.reference_probe(state_dict)
        payload = to_payload(state_dict)
        payload_ref = ray.put(payload)
        refs = {r.update_weights.remote(payload_ref, version, probe): name
                for r, name in zip(self.replicas.actors, self.names, strict=True)}
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
        ray.get(self.store.put.remote(version, [payload_ref]))  # what a restart catches up to
        gaps = [r["probe_gap"] for r in results if r["probe_gap"] is not None]
        return SyncReport(version, payload_bytes(payload), time.perf_counter() - start,
                          max(gaps) if gaps else None,
                          sorted(results, key=lambda r: r["replica"]))

    def shutdown(self) -> None:
        self.replicas.shutdown()
        ray.kill(self.store)
        if self.owned_resources is not None:
            self.owned_resources.release()
