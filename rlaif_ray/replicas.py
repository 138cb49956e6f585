"""A set of named replica actors in one resource pool, fed least-loaded first.

Generator and judge pools both use it: the driver submits requests to the least-loaded
replica, keeps a bounded queue per replica, and learns which replica finished which request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import ray

from rlaif_ray.cluster import ResourcePool


def actor_options(pool: ResourcePool, replica: int, name: str,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """Ray actor options that place replica `replica` of `pool` in its bundle, by name."""
    bundle = pool.spec.bundle
    return {
        "name": name,
        "num_cpus": bundle.get("CPU", 0.0),
        "num_gpus": bundle.get("GPU", 0.0),
        "resources": {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")},
        "scheduling_strategy": pool.scheduling(replica),
        "runtime_env": {"env_vars": env or {}},
        "max_concurrency": 1,
    }


class ReplicaSet:
    """Actors `<name>-<i>` (one per bundle of `pool`) built by `make_args(i, replica_name)`."""

    def __init__(self, actor_cls: type, pool: ResourcePool, name: str,
                 make_args: Callable[[int, str], tuple], env: dict[str, str] | None = None,
                 max_inflight: int = 2) -> None:
        self.name = name
        self.max_inflight = max_inflight
        self.names = [f"{name}-{i}" for i in range(pool.spec.replicas)]
        remote_cls = ray.remote(actor_cls)
        self.actors = [
            remote_cls.options(**actor_options(pool, i, replica, env)).remote(
                *make_args(i, replica))
            for i, replica in enumerate(self.names)
        ]
        self.load = [0] * len(self.actors)
        self._owner: dict[ray.ObjectRef, int] = {}

    def wait_ready(self, method: str = "info") -> list[Any]:
        """Block until every actor answers `method` (surfaces start-up errors)."""
        return self.call_all(method)

    def has_capacity(self) -> bool:
        return min(self.load) < self.max_inflight

    def submit(self, method: str, *args: Any) -> ray.ObjectRef:
        """Call `method` on the least-loaded replica; returns the result's ref."""
        replica = min(range(len(self.load)), key=self.load.__getitem__)
        ref = getattr(self.actors[replica], method).remote(*args)
        self._owner[ref] = replica
        self.load[replica] += 1
        return ref

    def finished(self, ref: ray.ObjectRef) -> str:
        """Mark `ref` done; returns the name of the replica that served it."""
        replica = self._owner.pop(ref)
        self.load[replica] -= 1
        return self.names[replica]

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """Call `method` on every replica and return their answers in replica order."""
        return ray.get([getattr(a, method).remote(*args) for a in self.actors])

    def shutdown(self) -> None:
        """Kill every replica and wait until Ray reports each dead (its name is free again)."""
        for actor in self.actors:
            ray.kill(actor)
        for actor in self.actors:
            with contextlib.suppress(ray.exceptions.RayActorError):
                ray.get(actor.info.remote(), timeout=60)
