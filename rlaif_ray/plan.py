"""`rlaif-ray plan`: the resource plan per pool for a config, checked against a cluster (or
none), without starting anything."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.table import Table

from rlaif_ray.cluster import PoolSpec, ResourcePoolError, check_feasible
from rlaif_ray.judge.pools import judge_pool_spec
from rlaif_ray.rollout.pool import generator_pool_spec
from rlaif_ray.train.trainer import trainer_pool_spec


def pool_specs(cfg: DictConfig) -> list[PoolSpec]:
    """Every pool the run reserves: generators, each llm/http judge, the trainer."""
    judges = [judge_pool_spec(j) for j in cfg.judges if j.kind != "rule"]
    return [generator_pool_spec(cfg), *judges, trainer_pool_spec(cfg)]


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))


def totals(specs: list[PoolSpec]) -> dict[str, float]:
    out: dict[str, float] = {}
    for spec in specs:
        for key, value in spec.bundle.items():
            out[key] = out.get(key, 0.0) + value * spec.replicas
    return out


def plan_table(specs: list[PoolSpec]) -> Table:
    table = Table(title="resource plan")
    for column in ("pool", "replicas", "per replica", "total", "strategy"):
        table.add_column(column)
    for spec in specs:
        table.add_row(spec.name, str(spec.replicas), _fmt(spec.bundle),
                      _fmt({k: v * spec.replicas for k, v in spec.bundle.items()}),
                      spec.strategy)
    table.add_row("all pools", "", "", _fmt(totals(specs)), "")
    return table


def check_plan(specs: list[PoolSpec], nodes: list[dict[str, float]]) -> list[str]:
    """Problems placing `specs` on `nodes` (each pool alone, then all together)."""
    problems = []
    for spec in specs:
        try:
            check_feasible(spec, nodes)
        except ResourcePoolError as err:
            problems.append(str(err))
    have: dict[str, float] = {}
    for node in nodes:
        for key, value in node.items():
            have[key] = have.get(key, 0.0) + value
    for key, need in totals(specs).items():
        if have.get(key, 0.0) + 1e-9 < need:
            problems.append(f"all pools together need {key}={need:g}; the cluster has "
                            f"{have.get(key, 0.0):g}")
    return problems
