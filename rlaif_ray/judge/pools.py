"""Judge pools from config: each `llm` or `http` judge gets its own resource pool and
named replicas (`judge-<name>-<i>`), independent of the generators and the trainer;
`rule` judges run in the driver."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from omegaconf import DictConfig

from rlaif_ray.cluster import PoolSpec, ResourcePool, bundle_for, reserve_pool
from rlaif_ray.judge.kinds import JUDGE_KINDS
from rlaif_ray.replicas import ReplicaSet


@dataclass
class JudgePool:
    """One judge of the ensemble: its config and, unless it is a rule judge, its replicas."""

    cfg: DictConfig
    replicas: ReplicaSet | None = None
    resources: ResourcePool | None = None

    @functools.cached_property
    def name(self) -> str:
        """The judge's name (read once: the stream asks for it with every reply)."""
        return self.cfg.name

    @property
    def remote(self) -> ReplicaSet:
        """The replicas of an `llm` or `http` judge (a rule judge has none: it runs in the
        driver)."""
        if self.replicas is None:
            raise ValueError(f"judge {self.name!r} is a rule judge: it has no replicas")
        return self.replicas

    def shutdown(self) -> None:
        if self.replicas is not None:
            self.replicas.shutdown()
        if self.resources is not None:
            self.resources.release()


def judge_pool_spec(judge_cfg: DictConfig) -> PoolSpec:
    """The resource pool of one judge."""
    return PoolSpec(f"judge-{judge_cfg.name}", judge_cfg.replicas,
                    bundle_for(judge_cfg.resources), judge_cfg.placement_strategy)


def autoscaled(judge_cfg: DictConfig) -> bool:
    return judge_cfg.min_replicas is not None


def start_judges(cfg: DictConfig, wait: bool = True) -> list[JudgePool]:
    """Start the replicas of every judge in `cfg.judges`: a reserved pool for a fixed replica
    count, per-replica resource requests for an autoscaled one; with `wait`, wait for their
    engines (`wait_for_judges`)."""
    pools: list[JudgePool] = []
    try:
        for judge_cfg in cfg.judges:
            kind = JUDGE_KINDS[judge_cfg.kind]
            if kind is None:
                pools.append(JudgePool(judge_cfg))
                continue
            actor_cls, make_args, env = importlib.import_module(kind).replicas(
                judge_cfg, cfg.cache_dir, cfg.run.seed)
            name = f"judge-{judge_cfg.name}"
            if autoscaled(judge_cfg):
                replicas = ReplicaSet(actor_cls, name, make_args, env=env,
                                      max_inflight=judge_cfg.max_inflight_per_replica,
                                      bundle=bundle_for(judge_cfg.resources),
                                      initial=judge_cfg.min_replicas,
                                      stall_timeout_s=cfg.run.stall_timeout_s)
                pools.append(JudgePool(judge_cfg, replicas))
                continue
            resources = reserve_pool(judge_pool_spec(judge_cfg), cfg.ray.pool_timeout_s)
            pools.append(JudgePool(judge_cfg, resources=resources))
            pools[-1].replicas = ReplicaSet(actor_cls, name, make_args, env=env,
                                            max_inflight=judge_cfg.max_inflight_per_replica,
                                            pool=resources,
                                            stall_timeout_s=cfg.run.stall_timeout_s)
        if wait:
            wait_for_judges(pools)
    except BaseException:
        for pool in pools:
            pool.shutdown()
        raise
    return pools


def wait_for_judges(pools: list[JudgePool]) -> None:
    """Wait until every judge replica's engine has loaded (surfaces start-up errors)."""
    for pool in pools:
        if pool.replicas is not None:
            pool.replicas.wait_ready()


def rescale(judge: JudgePool, waiting: int) -> None:
    """Grow an autoscaled judge while `waiting` requests exceed its backlog bound; retire
    idle replicas when nothing waits."""
    if judge.replicas is None or not autoscaled(judge.cfg):
        return
    judge.replicas.poll_ready()
    count = len(judge.replicas.names)
    if waiting > judge.cfg.scale_up_backlog * count and count < judge.cfg.max_replicas:
        judge.replicas.add(f"{waiting} requests waiting for {count} replica(s)")
    elif waiting == 0:
        judge.replicas.retire_idle(judge.cfg.min_replicas, judge.cfg.scale_down_idle_s)


def replica_counts(judges: list[JudgePool]) -> dict[str, int]:
    """Replicas now of each autoscaled judge."""
    return {j.name: len(j.replicas.names) for j in judges if j.replicas is not None}


class ScaleEventLog:
    """The autoscaled judges' scaling events, each handed out once."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def new(self, judges: list[JudgePool]) -> list[str]:
        """Events since the last call, as `<action> <replica> (<reason>)`."""
        events = []
        for judge in judges:
            if judge.replicas is None:
                continue
            seen = self.seen.get(judge.name, 0)
            events += [f"{e.action} {e.replica} ({e.reason})"
                       for e in judge.replicas.events[seen:]]
            self.seen[judge.name] = len(judge.replicas.events)
        return events
