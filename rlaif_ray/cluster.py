"""Ray connection and resource pools.

A pool is one placement group with a bundle per replica (generators, each judge, the
trainer), so each pool scales and lands on nodes independently of the others. A request
the cluster can never hold fails at once, naming the pool and the missing resource; one
that could fit but stays pending fails after `ray.pool_timeout_s`, never an endless wait.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray
from omegaconf import DictConfig, OmegaConf
from ray._private import ray_constants
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlaif_ray.errors import ConfigError, ResourcePoolError
from rlaif_ray.file_lock import lock_within

AUTH_MODE_ENV = "RAY_AUTH_MODE"
log = logging.getLogger(__name__)

DEFAULT_DASHBOARD_PORT = 8265
# Machine-wide: one rlaif-ray process at a time starts a local Ray (`one_local_start`).
LOCAL_START_LOCK = Path(tempfile.gettempdir()) / "rlaif-ray-local-start.lock"
LOCAL_START_WAIT_S = 120.0
# Where Ray's state API clients without an address look (before the machine's record of
# its current Ray): set for every process of a local Ray this driver starts.
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


@dataclass(frozen=True)
class Session:
    """The Ray this process joined: whether it started it, and where to watch it."""

    started_here: bool
    dashboard_url: str | None = None
    metrics_url: str | None = None
    logs_dir: str | None = None


def _address_file() -> Path:
    from ray._private.utils import get_ray_address_file  # no public API for this file

    return Path(get_ray_address_file(None))


def address_record() -> str | None:
    """The address of this machine's current Ray as Ray recorded it (None: none)."""
    path = _address_file()
    return (path.read_text().strip() or None) if path.exists() else None


def claim_address_file(gcs_address: str) -> str | None:
    """Record `gcs_address` as this machine's current Ray, as `ray start` does, and return
    what was recorded before (None: nothing). Ray's auto-detection reads this record: Ray
    Train's placement-group cleaner (an actor of every fit) asks the state API without an
    address, and a stale record left by an earlier `ray start` made the end of every run
    wait 11 s for that query to time out (the cleaner watching no cluster meanwhile). The
    `ray` CLI finds the run's Ray too (`ray status`, `ray list actors`)."""
    before = address_record()
    _address_file().write_text(gcs_address)
    return before


def release_address_file(gcs_address: str, before: str | None) -> None:
    """Put back the record `claim_address_file` replaced, unless another Ray recorded
    itself since (at the exit of a process that started a local Ray). A record of a Ray
    that no longer answers (its process was killed) is not put back: the record goes."""
    if address_record() == gcs_address:
        if before and _answers(before):
            _address_file().write_text(before)
        else:
            _address_file().unlink()


def replace_dead_record(gcs_address: str) -> None:
    """Record the joined cluster `gcs_address` as this machine's Ray while this process
    runs, if the record names a Ray that no longer answers (left by a killed local run).
    Ray Train's placement-group cleaner on this machine asks the state API through the
    record, and would otherwise poll the dead Ray until the job ends, never cleaning up.
    A record of a live Ray is the user's: it stays."""
    record = address_record()
    if record and record != gcs_address and not _answers(record):
        record_while_running(gcs_address)


def record_while_running(gcs_address: str) -> None:
    """Record `gcs_address` as this machine's Ray until this process exits, then put back
    what was recorded before (`claim_address_file`, `release_address_file`)."""
    atexit.register(release_address_file, gcs_address, claim_address_file(gcs_address))


def _answers(address: str) -> bool:
    """Whether something listens at `address` (host:port), within a fifth of a second."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except (OSError, ValueError):
        return False


def choose_token_auth() -> None:
    """Make token auth, Ray's default for a new local Ray, an explicit choice (unless the
    user made one in $RAY_AUTH_MODE). Left to the default, Ray announces it with a
    warning on a machine's first run (before ~/.ray/auth_token exists); chosen, Ray
    generates the token quietly. Workers inherit the mode from the environment."""
    if AUTH_MODE_ENV not in os.environ:
        from ray._raylet import Config  # type: ignore[attr-defined]  # refresh the variable

        os.environ[AUTH_MODE_ENV] = "token"
        Config.initialize("")


def dashboard_port(ray_cfg: DictConfig) -> int | None:
    """The port a local Ray's dashboard takes: `ray.dashboard_port` (which must be free),
    else 8265 or the next free port, as Ray would choose (a second run beside the first);
    None without a dashboard."""
    if not ray_cfg.dashboard:
        return None
    port = ray_cfg.dashboard_port
    if port is None:
        return next(p for p in range(DEFAULT_DASHBOARD_PORT, 65536) if _free(p))
    if not _free(port):
        raise ConfigError(f"ray.dashboard_port {port} is in use on 127.0.0.1 (another "
                          f"Ray's dashboard?): choose another, or null for the next free "
                          f"port")
    return port


def _free(port: int) -> bool:
    """Whether a server could bind 127.0.0.1:`port` (as Ray checks before it starts one)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def one_local_start(lock: Path = LOCAL_START_LOCK,
                    wait_s: float = LOCAL_START_WAIT_S) -> Iterator[None]:
    """Within: no other rlaif-ray process on this machine is starting a local Ray. Two
    starting at once both find the same dashboard port free (and on a machine's first run
    both make ~/.ray/auth_token), and the dashboard that binds it second fails its Ray's
    start. Another start holds the lock for seconds; after `wait_s` this one goes ahead."""
    try:  # read-only is enough to lock, and opens a file another user created
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:  # not creatable here: start unguarded, as without this lock
        yield
        return
    try:
        if not lock_within(fd, wait_s):
            log.warning("another rlaif-ray start held %s for %.0f s; starting this local "
                        "Ray anyway", lock, wait_s)
        yield
    finally:
        os.close(fd)  # and with it the lock


def connect(ray_cfg: DictConfig) -> Session:
    """Join `ray.address` (or $RAY_ADDRESS), else start a local Ray with its dashboard on
    127.0.0.1; reuse an existing session. Workers' output reaches this console only with
    `ray.verbose` (it is always in Ray's log files and the dashboard's Logs view)."""
    address = ray_cfg.address or os.environ.get("RAY_ADDRESS")
    if address or ray.is_initialized() or ray_cfg.dashboard:
        # The dashboard's Train view shows the trainer only with Ray Train's state tracking
        # (an actor of its own: left out for a local Ray without a dashboard).
        os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")
    if ray.is_initialized():
        return Session(started_here=False)
    quiet = {"log_to_driver": bool(ray_cfg.verbose),
             "logging_level": logging.INFO if ray_cfg.verbose else logging.WARNING}
    if address:
        context = ray.init(address=address, namespace=ray_cfg.namespace, **quiet)
        replace_dead_record(context.address_info["gcs_address"])
        return Session(False, _url(context.dashboard_url))
    with one_local_start():
        return _start_local(ray_cfg, quiet)


def _start_local(ray_cfg: DictConfig, quiet: dict) -> Session:
    choose_token_auth()
    # Gauges reach the metrics endpoint within seconds, not Ray's default 10 s.
    os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")
    # Ray Train's preemption watcher (an actor process of its own) waits for a cloud's
    # notice that a node will be drained; this machine gets none.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    port = dashboard_port(ray_cfg)
    if port is not None:
        # Ray Train's placement-group cleaner (an actor of every fit) asks the state API
        # whether the fit's controller lives, and without an address finds it through the
        # machine-wide record of the current Ray: with another run's Ray recorded there,
        # where this run's controller is unknown, it would take the trainer for dead and
        # remove its placement group. Every process of this Ray inherits its own address.
        os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
    context = ray.init(
        address="local",
        namespace=ray_cfg.namespace,
        num_cpus=ray_cfg.num_cpus,
        resources=OmegaConf.to_container(ray_cfg.resources) or None,
        include_dashboard=bool(ray_cfg.dashboard),
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        _metrics_export_port=ray_cfg.metrics_export_port,
        **quiet,
    )
    node = ray._private.worker.global_worker.node
    record_while_running(node.gcs_address)
    return Session(True, _url(context.dashboard_url) if ray_cfg.dashboard else None,
                   f"http://127.0.0.1:{node.metrics_export_port}/metrics",
                   os.path.join(node.get_session_dir_path(), "logs"))


# False once a thread of this process may be blocked in a Ray call that will not return
# before the process ends (`keep_ray_until_exit`).
_teardown_safe = True


def keep_ray_until_exit() -> None:
    """Leave Ray to the end of this process: a thread of it is still blocked in a Ray call
    (the trainer's fit, which did not return even when its controller was killed). Ray's
    teardown in this process (`ray.shutdown`, also Ray's own exit hook) frees the core
    worker under such a thread, which then crashes the process (SIGSEGV) on its way out.
    Without it, the kernel ends a local Ray's GCS and raylet with the process that started
    them (Ray starts them fate-shared; the raylet's agents follow when they find it gone,
    which took minutes here), and a cluster ends the actors of a driver that left."""
    global _teardown_safe
    _teardown_safe = False
    atexit.unregister(ray.shutdown)


def stop_local_ray(verbose: bool) -> None:
    """Stop the local Ray this process started (`connect`), at the end of a command.

    Ray's shutdown stops the GCS and then gives each remaining process a second to exit
    after SIGTERM. The autoscaler monitor spends all of it: its SIGTERM handler tries to
    report the termination to the GCS already gone, and is killed when the second is up.
    A local cluster's monitor has nothing to save, so it is killed first, at once. The rest
    stop now rather than at exit, where Ray's hook first waits 0.5 s for workers' log lines
    to reach this console (which they do only with `ray.verbose`: then the hook is left to
    it). Nothing is stopped here after `keep_ray_until_exit`."""
    if not _teardown_safe:
        return
    node = ray._private.worker._global_node
    if node is not None:
        node._kill_process_type(ray_constants.PROCESS_TYPE_MONITOR, check_alive=False,
                                wait=True)
    if not verbose:
        ray.shutdown()


def _url(address: str | None) -> str | None:
    if not address:
        return None
    return address if "://" in address else f"http://{address}"


def bundle_for(resources_cfg: DictConfig) -> dict[str, float]:
    """The Ray resource bundle of one replica from a `*.resources` config section."""
    bundle = {"CPU": float(resources_cfg.num_cpus), "GPU": float(resources_cfg.num_gpus)}
    bundle.update({k: float(v) for k, v in resources_cfg.custom.items()})
    return {k: v for k, v in bundle.items() if v > 0}


@dataclass
class PoolSpec:
    name: str
    replicas: int
    bundle: dict[str, float]
    strategy: str = "PACK"


@dataclass
class ResourcePool:
    """A reserved pool: its placement group and one bundle index per replica."""

    spec: PoolSpec
    group: PlacementGroup

    def scheduling(self, replica: int) -> PlacementGroupSchedulingStrategy:
        """Scheduling strategy that puts `replica` into its own bundle of this pool."""
        return PlacementGroupSchedulingStrategy(
            placement_group=self.group,
            placement_group_bundle_index=replica,
            placement_group_capture_child_tasks=True,
        )

    def release(self) -> None:
        remove_placement_group(self.group)


def _format(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items())) or "nothing"


def _alive_node_resources() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def check_feasible(spec: PoolSpec, nodes: list[dict[str, float]]) -> None:
    """Raise ResourcePoolError if `spec` can never be placed on `nodes` (their total resources)."""
    wanted = {k: v * spec.replicas for k, v in spec.bundle.items()}
    totals: dict[str, float] = {}
    for node in nodes:
        for key, value in node.items():
            totals[key] = totals.get(key, 0.0) + value
    missing = {k: v for k, v in wanted.items() if totals.get(k, 0.0) + 1e-9 < v}
    if missing:
        detail = "; ".join(f"{k}: needs {v:g}, cluster has {totals.get(k, 0.0):g}"
                           for k, v in missing.items())
        raise ResourcePoolError(
            f"pool '{spec.name}' ({spec.replicas} x {{{_format(spec.bundle)}}}) cannot be "
            f"placed: {detail}"
        )
    if not any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in spec.bundle.items())
               for node in nodes):
        raise ResourcePoolError(
            f"pool '{spec.name}': no single node holds one replica's bundle "
            f"{{{_format(spec.bundle)}}}"
        )
    if spec.strategy.startswith("STRICT_PACK") and not any(
        all(node.get(k, 0.0) + 1e-9 >= v for k, v in wanted.items()) for node in nodes
    ):
        raise ResourcePoolError(
            f"pool '{spec.name}': STRICT_PACK needs one node with {{{_format(wanted)}}}"
        )


def reserve_pool(spec: PoolSpec, timeout_s: float) -> ResourcePool:
    """Create the pool's placement group and wait (bounded) until it is placed."""
    check_feasible(spec, _alive_node_resources())
    group = placement_group([dict(spec.bundle)] * spec.replicas, strategy=spec.strategy,
                            name=f"rlaif-{spec.name}")
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        raise ResourcePoolError(
            f"pool '{spec.name}' ({spec.replicas} x {{{_format(spec.bundle)}}}) was not "
            f"placed within {timeout_s:g}s; available now: "
            f"{{{_format(ray.available_resources())}}} (other pools or jobs hold the rest)"
        )
    return ResourcePool(spec, group)
