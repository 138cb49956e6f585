"""Judge pools from config: each `llm` or `http` judge gets its own resource pool and
named replicas (`judge-<name>-<i>`), independent of the generators and the trainer;
`rule` judges run in the driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from rlaif_ray.cluster import PoolSpec, ResourcePool, bundle_for, reserve_pool
from rlaif_ray.judge.http_judge import HTTPJudge
from rlaif_ray.judge.llm_judge import LLMJudge
from rlaif_ray.models import resolve_model
from rlaif_ray.replicas import ReplicaSet
from rlaif_ray.vllm_engine import ENGINE_ENV, EngineSpec


@dataclass
class JudgePool:
    """One judge of the ensemble: its config and, unless it is a rule judge, its replicas."""

    cfg: DictConfig
    replicas: ReplicaSet | None = None
    resources: ResourcePool | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def shutdown(self) -> None:
        if self.replicas is not None:
            self.replicas.shutdown()
        if self.resources is not None:
            self.resources.release()


def judge_pool_spec(judge_cfg: DictConfig) -> PoolSpec:
    """The resource pool of one judge."""
    return PoolSpec(f"judge-{judge_cfg.name}", judge_cfg.replicas,
                    bundle_for(judge_cfg.resources), judge_cfg.placement_strategy)


def _actor_args(judge_cfg: DictConfig, cache_dir: str | None,
                seed: int) -> tuple[type, Any, dict[str, str]]:
    if judge_cfg.kind == "llm":
        model_path = resolve_model(judge_cfg.model, cache_dir)
        return LLMJudge, lambda i, replica: (
            replica, EngineSpec.from_config(judge_cfg, model_path, seed + 1000 + i),
            judge_cfg.temperature, judge_cfg.max_tokens), ENGINE_ENV
    return HTTPJudge, lambda i, replica: (
        replica, judge_cfg.base_url, judge_cfg.model, judge_cfg.api_key_env,
        judge_cfg.temperature, judge_cfg.max_tokens, judge_cfg.concurrency,
        judge_cfg.timeout_s, judge_cfg.max_retries, judge_cfg.backoff_s), {}


def start_judges(cfg: DictConfig) -> list[JudgePool]:
    """Reserve a pool and start the replicas of every judge in `cfg.judges`."""
    pools: list[JudgePool] = []
    try:
        for judge_cfg in cfg.judges:
            if judge_cfg.kind == "rule":
                pools.append(JudgePool(judge_cfg))
                continue
            resources = reserve_pool(judge_pool_spec(judge_cfg), cfg.ray.pool_timeout_s)
            actor_cls, make_args, env = _actor_args(judge_cfg, cfg.cache_dir, cfg.run.seed)
            replicas = ReplicaSet(actor_cls, resources, f"judge-{judge_cfg.name}", make_args,
                                  env=env, max_inflight=judge_cfg.max_inflight_per_replica)
            pools.append(JudgePool(judge_cfg, replicas, resources))
        for pool in pools:
            if pool.replicas is not None:
                pool.replicas.wait_ready()
    except BaseException:
        for pool in pools:
            pool.shutdown()
        raise
    return pools
