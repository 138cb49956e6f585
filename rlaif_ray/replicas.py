"""A set of named replica actors, fed least-loaded first.

Generator and judge pools both use it: the driver submits requests to the least-loaded
ready replica, keeps a bounded queue per replica, and learns which replica finished which
request. A fixed set has one replica per bundle of a reserved resource pool; a scalable set
(judges with min/max replicas) places each replica by its own resource request, so it can
grow while a backlog lasts (on a cluster the Ray autoscaler brings nodes for pending
replicas) and retire replicas that sit idle. Requests only ever go to ready replicas and a
replica is retired only with nothing in flight, so no request is lost or sent twice.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from rlaif_ray.cluster import ResourcePool
from rlaif_ray.errors import ReplicaStartError, StallError
from rlaif_ray.waits import bounded_get

log = logging.getLogger(__name__)


# A replica that dies is restarted by Ray (up to this many times) and the calls it had in
# flight are retried on the restarted replica, so no request is lost.
MAX_RESTARTS = 3


def actor_options(name: str, bundle: dict[str, float], env: dict[str, str] | None,
                  pool: ResourcePool | None = None, replica: int = 0) -> dict[str, Any]:
    """Ray actor options for one replica: its bundle of `pool`, or a plain resource request."""
    options = {
        "max_restarts": MAX_RESTARTS,
        "max_task_retries": MAX_RESTARTS,
        "name": name,
        "num_cpus": bundle.get("CPU", 0.0),
        "num_gpus": bundle.get("GPU", 0.0),
        "resources": {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")},
        "runtime_env": {"env_vars": env or {}},
        "max_concurrency": 1,
    }
    if pool is not None:
        options["scheduling_strategy"] = pool.scheduling(replica)
    return options


@dataclass
class Replica:
    name: str
    actor: Any
    ready_ref: Any
    ready: bool = False
    load: int = 0
    idle_since: float = field(default_factory=time.monotonic)


@dataclass
class ScaleEvent:
    action: str  # add | retire
    replica: str
    replicas_after: int
    reason: str


class ReplicaSet:
    """Actors `<name>-<i>` built by `make_args(i, replica_name)`. With `pool`, one per bundle
    (fixed); else `initial` replicas each requesting `bundle` (scalable with `add`/`retire`).
    Every wait on them is bounded by `stall_timeout_s` without a reply (StallError)."""

    def __init__(self, actor_cls: type, name: str, make_args: Callable[[int, str], tuple],
                 env: dict[str, str] | None = None, max_inflight: int = 2,
                 pool: ResourcePool | None = None, bundle: dict[str, float] | None = None,
                 initial: int | None = None, stall_timeout_s: float = 300.0) -> None:
        self.name = name
        self.stall_timeout_s = stall_timeout_s
        self.max_inflight = max_inflight
        self.pool = pool
        self.bundle = pool.spec.bundle if pool is not None else dict(bundle or {})
        self.env = env
        self.make_args = make_args
        self.remote_cls = ray.remote(actor_cls)
        self.replicas: dict[str, Replica] = {}
        self.events: list[ScaleEvent] = []
        self._next = 0
        self._owner: dict[ray.ObjectRef, str] = {}
        for _ in range(pool.spec.replicas if pool is not None else (initial or 1)):
            self._create()

    def _create(self) -> str:
        index = self._next
        self._next += 1
        replica = f"{self.name}-{index}"
        options = actor_options(replica, self.bundle, self.env, self.pool, index)
        actor = self.remote_cls.options(**options).remote(*self.make_args(index, replica))
        self.replicas[replica] = Replica(replica, actor, actor.info.remote())
        return replica

    @property
    def names(self) -> list[str]:
        return list(self.replicas)

    @property
    def actors(self) -> list[Any]:
        return [r.actor for r in self.replicas.values()]

    def wait_ready(self) -> list[Any]:
        """Wait until every replica answers; a replica that fails to start raises
        ReplicaStartError with its own error."""
        with self._start_errors():
            answers = bounded_get([r.ready_ref for r in self.replicas.values()],
                                  self.stall_timeout_s, f"every {self.name} replica (start-up)")
        for r in self.replicas.values():
            r.ready = True
        return answers

    def starting(self) -> list[ray.ObjectRef]:
        """The start-up refs of replicas not ready yet (each resolves when its replica is):
        a wait on replies can include them, to hand queued work to a new replica at once."""
        return [r.ready_ref for r in self.replicas.values() if not r.ready]

    def poll_ready(self) -> None:
        """Mark replicas that finished starting as ready (does not block)."""
        starting = {r.ready_ref: r for r in self.replicas.values() if not r.ready}
        if starting:
            done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=0)
            for ref in done:
                with self._start_errors():
                    ray.get(ref)
                starting[ref].ready = True
                starting[ref].idle_since = time.monotonic()

    @contextlib.contextmanager
    def _start_errors(self):
        """A replica that died in its constructor becomes a ReplicaStartError naming it and
        the error it raised (the last line of its traceback), not Ray's whole traceback."""
        try:
            yield
        except ray.exceptions.RayActorError as err:
            if not err.actor_init_failed:
                raise
            names = {r.actor._actor_id.hex(): name for name, r in self.replicas.items()}
            cause = [line for line in str(err).splitlines() if line.strip()][-1].strip()
            cause = re.sub(r"^[\w.]+\.(\w+: )", r"\1", cause)  # the error's module off
            raise ReplicaStartError(f"{names.get(err.actor_id, self.name)} failed to start: "
                                    f"{cause}") from None

    def _ready(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.ready]

    def has_capacity(self) -> bool:
        return any(r.load < self.max_inflight for r in self._ready())

    def submit(self, method: str, *args: Any) -> ray.ObjectRef:
        """Call `method` on the least-loaded ready replica; returns the result's ref."""
        replica = min(self._ready(), key=lambda r: r.load)
        ref = getattr(replica.actor, method).remote(*args)
        self._owner[ref] = replica.name
        replica.load += 1
        return ref

    def wait_any(self, refs: list[ray.ObjectRef]) -> ray.ObjectRef:
        """The first of `refs` (requests to this set) to finish; StallError when none does
        within `stall_timeout_s`, naming the replicas and their requests in flight."""
        done, _ = ray.wait(refs, num_returns=1, timeout=self.stall_timeout_s)
        if not done:
            busy = {r.name: r.load for r in self.replicas.values() if r.load}
            raise StallError(f"{self.name}: no reply within {self.stall_timeout_s:g}s "
                             f"(run.stall_timeout_s); requests in flight per replica: {busy}")
        return done[0]

    def finished(self, ref: ray.ObjectRef) -> str:
        """Mark `ref` done; returns the name of the replica that served it."""
        replica = self.replicas[self._owner.pop(ref)]
        replica.load -= 1
        if replica.load == 0:
            replica.idle_since = time.monotonic()
        return replica.name

    def add(self, reason: str) -> str:
        """Start one more replica (scalable sets only); it serves once ready."""
        if self.pool is not None:
            raise RuntimeError(f"{self.name}: a fixed pool cannot grow")
        replica = self._create()
        self.events.append(ScaleEvent("add", replica, len(self.replicas), reason))
        log.info("%s: added %s (%d replicas): %s", self.name, replica, len(self.replicas),
                 reason)
        return replica

    def retire_idle(self, keep: int, idle_s: float) -> list[str]:
        """Stop replicas with nothing in flight for `idle_s` or more, keeping `keep` (and
        `keep` ready ones, when that many are ready). Replicas still starting go first: they
        serve nothing yet, and on a cluster each one's resource request makes the autoscaler
        bring a node."""
        now = time.monotonic()
        ready = len(self._ready())
        retired = []
        for replica in sorted(self.replicas.values(), key=lambda r: (r.ready, r.idle_since)):
            if len(self.replicas) <= keep:
                break
            if replica.load or now - replica.idle_since < idle_s or (replica.ready
                                                                     and ready <= keep):
                continue
            self._kill([replica])
            del self.replicas[replica.name]
            ready -= replica.ready
            retired.append(replica.name)
            how = "idle" if replica.ready else "still starting, idle"
            self.events.append(ScaleEvent("retire", replica.name, len(self.replicas),
                                          f"{how} {now - replica.idle_since:.1f}s"))
            log.info("%s: retired %s (%d replicas)", self.name, replica.name,
                     len(self.replicas))
        return retired

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """Call `method` on every replica and return their answers in replica order."""
        return bounded_get([getattr(r.actor, method).remote(*args)
                            for r in self.replicas.values()], self.stall_timeout_s,
                           f"every {self.name} replica ({method})")

    @staticmethod
    def _kill(replicas: list[Replica]) -> None:
        """Kill replicas and wait until Ray reports each dead (its name is free again)."""
        for replica in replicas:
            ray.kill(replica.actor)
        for replica in replicas:  # no retry: a retried call would be logged as a failure
            with contextlib.suppress(ray.exceptions.RayActorError):
                ray.get(replica.actor.info.options(max_task_retries=0).remote(), timeout=60)

    def shutdown(self) -> None:
        self._kill(list(self.replicas.values()))
        self.replicas.clear()
