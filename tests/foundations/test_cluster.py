import os
import re
import socket
import subprocess
import sys
import time

import pytest
from held_lock import assert_waits_for_its_holder, hold

from rlaif_ray.cluster import (
    PoolSpec,
    ResourcePoolError,
    _free,
    address_record,
    check_feasible,
    claim_address_file,
    dashboard_port,
    one_local_start,
    release_address_file,
    reserve_pool,
)
from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError

NODES = [{"CPU": 4.0, "judge_gpu": 2.0}, {"CPU": 2.0}]


def test_feasible_pool_passes():
    check_feasible(PoolSpec("judge", 2, {"CPU": 0.5, "judge_gpu": 1.0}), NODES)


def test_missing_resource_names_pool_and_amounts():
    with pytest.raises(ResourcePoolError, match=r"pool 'generator'.*GPU: needs 2, cluster has 0"):
        check_feasible(PoolSpec("generator", 2, {"CPU": 1.0, "GPU": 1.0}), NODES)


def test_too_many_replicas_names_total():
    with pytest.raises(ResourcePoolError, match=r"pool 'judge'.*judge_gpu: needs 3, cluster "
                                                r"has 2"):
        check_feasible(PoolSpec("judge", 3, {"judge_gpu": 1.0}), NODES)


def test_bundle_larger_than_any_node():
    with pytest.raises(ResourcePoolError, match="no single node holds one replica's bundle"):
        check_feasible(PoolSpec("trainer", 1, {"CPU": 5.0}), NODES)


def test_strict_pack_needs_one_node():
    with pytest.raises(ResourcePoolError, match="STRICT_PACK needs one node"):
        check_feasible(PoolSpec("trainer", 3, {"CPU": 2.0}, "STRICT_PACK"), NODES)


@pytest.mark.slow
def test_impossible_request_fails_fast_on_real_ray(ray_session):
    with pytest.raises(ResourcePoolError, match=r"pool 'judge-big'.*GPU: needs 4, cluster has 0"):
        reserve_pool(PoolSpec("judge-big", 4, {"CPU": 0.1, "GPU": 1.0}), timeout_s=600)


@pytest.mark.slow
def test_busy_resources_time_out_with_what_is_available(ray_session):
    free = ray_session.available_resources()["CPU"]
    hog = reserve_pool(PoolSpec("hog", 1, {"CPU": free}), timeout_s=30)
    try:
        with pytest.raises(ResourcePoolError, match=r"pool 'late'.*not placed within 1s; "
                                                    r"available now"):
            reserve_pool(PoolSpec("late", 1, {"CPU": 1.0}), timeout_s=1)
    finally:
        hog.release()
    placed = reserve_pool(PoolSpec("late", 1, {"CPU": 1.0}), timeout_s=30)
    placed.release()


_CONNECT = """
import os, ray
from rlaif_ray.cluster import connect
from rlaif_ray.config import load_config
session = connect(load_config(None, ["ray.dashboard={dashboard}"]).ray)
print(session.started_here, os.environ.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"),
      os.environ.get("RAY_TRAIN_ENABLE_STATE_TRACKING"))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("dashboard", "tracking"), [(False, "None"), (True, "1")])
def test_a_local_ray_runs_no_preemption_watcher_and_tracks_state_for_its_dashboard(
        dashboard, tracking):
    """A local Ray started by the run: Ray Train's preemption watcher off (no cloud drains
    this machine); its state actor only where a dashboard shows it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_TRAIN_", "RAY_ADDRESS"))}
    out = subprocess.run([sys.executable, "-c", _CONNECT.format(dashboard=dashboard)],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "0", tracking]


_FIRST_RUN = """
import ray
from rlaif_ray.cluster import connect
from rlaif_ray.config import load_config
print(connect(load_config(None, []).ray).dashboard_url)
ray.shutdown()
"""


@pytest.mark.slow
def test_two_first_local_rays_at_once_beside_another_dashboard_print_only_their_addresses(
        tmp_path):
    """Two runs starting at once, a machine's first (no ~/.ray/auth_token yet), while
    another Ray's dashboard holds 8265: token auth chosen without Ray's warning, each
    dashboard on a free port of its own without Ray's bind error (both would have found
    the same one free: `one_local_start`), and each console told its port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_MODE"))}
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", 8265))
            other.listen()
        except OSError:
            pass  # another Ray's dashboard really holds it
        runs = [subprocess.Popen([sys.executable, "-c", _FIRST_RUN], text=True,
                                 env={**env, "HOME": str(tmp_path)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
        outs = [run.communicate(timeout=180) for run in runs]
    ports = []
    for run, (stdout, stderr) in zip(runs, outs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
        assert not re.search(r"WARNING|ERROR|Traceback", stderr), stderr
        ports.append(re.fullmatch(r"http://127\.0\.0\.1:(\d+)\n", stdout)[1])
    assert "8265" not in ports and ports[0] != ports[1]
    assert (tmp_path / ".ray" / "auth_token").stat().st_size > 0


def test_a_local_start_waits_for_another_then_goes_ahead_after_its_bound(tmp_path, caplog):
    lock = tmp_path / "start.lock"
    with one_local_start(lock, wait_s=0):  # nobody else: at once
        pass
    # Another process starting its Ray: this start waits until its Ray is up.
    assert_waits_for_its_holder(lock, lambda: one_local_start(lock, wait_s=60))
    other = hold(lock)  # one that never lets go: this start goes ahead
    began = time.monotonic()
    with one_local_start(lock, wait_s=0.3):
        assert time.monotonic() - began >= 0.3
    os.close(other)
    assert "starting this local Ray anyway" in caplog.text


def test_a_busy_dashboard_port_the_user_chose_is_a_config_error():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        cfg = load_config(None, [f"ray.dashboard_port={taken}"]).ray
        with pytest.raises(ConfigError, match=rf"ray.dashboard_port {taken} is in use"):
            dashboard_port(cfg)
    assert dashboard_port(cfg) == taken  # free again
    chosen = dashboard_port(load_config(None, []).ray)  # 8265, or the next free one
    assert chosen >= 8265 and _free(chosen)
    assert dashboard_port(load_config(None, [f"ray.dashboard_port={taken}",
                                             "ray.dashboard=false"]).ray) is None


def test_the_record_of_a_ray_that_no_longer_answers_is_not_put_back(tmp_path, monkeypatch):
    monkeypatch.setattr("rlaif_ray.cluster._address_file", lambda: tmp_path / "record")
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        alive = f"127.0.0.1:{live.getsockname()[1]}"
        for before, after in ((alive, alive), ("127.0.0.1:9", None), (None, None)):
            if before:
                (tmp_path / "record").write_text(before)
            assert claim_address_file("127.0.0.1:6379") == before
            assert address_record() == "127.0.0.1:6379"
            release_address_file("127.0.0.1:6379", before)
            assert address_record() == after, before
        (tmp_path / "record").write_text("10.0.0.1:6379")  # another Ray recorded since
        release_address_file("127.0.0.1:6379", alive)
        assert address_record() == "10.0.0.1:6379"


# Ray's auto-detection (what Ray Train's placement-group cleaner asks the state API with)
# while a local Ray started by `connect` runs.
_RECORD = """
import ray
from ray._private.services import canonicalize_bootstrap_address_or_die
from rlaif_ray.cluster import address_record, connect
from rlaif_ray.config import load_config
connect(load_config(None, ["ray.dashboard=false"]).ray)
gcs = ray._private.worker.global_worker.node.gcs_address
print(address_record() == gcs, canonicalize_bootstrap_address_or_die(None) == gcs)
ray.shutdown()
"""


@pytest.mark.slow
def test_a_local_ray_is_the_machines_current_ray_while_its_process_runs():
    """A record left by an earlier `ray start` (a dead cluster) made Ray Train's cleaner
    query that cluster at the end of every run and wait 11 s for it. While the run's own
    Ray runs it is the recorded one; afterwards the dead record is not put back."""
    stale = "127.0.0.1:9"
    before = claim_address_file(stale)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        out = subprocess.run([sys.executable, "-c", _RECORD], env=env, capture_output=True,
                             text=True, timeout=120, check=True)
        assert out.stdout.split() == ["True", "True"]
        assert address_record() is None
    finally:
        if before:
            claim_address_file(before)
        else:
            release_address_file(stale, None)


# What a worker of the joined cluster on this machine finds as the state API's address,
# as Ray Train's placement-group cleaner asks it (no address: Ray's auto-detection).
_JOIN = """
import ray
from rlaif_ray.cluster import address_record, connect
from rlaif_ray.config import load_config

@ray.remote(num_cpus=0)
def state_api_address():
    from ray.dashboard.utils import get_address_for_submission_client
    try:
        return get_address_for_submission_client(None)
    except Exception as error:
        return type(error).__name__

connect(load_config(None, ["ray.address={gcs}"]).ray)
print(address_record() == "{gcs}", ray.get(state_api_address.remote(), timeout=60))
ray.shutdown()
"""


@pytest.mark.slow
def test_a_run_joining_a_cluster_replaces_a_record_of_a_ray_that_no_longer_answers(
        ray_session):
    """A killed local run leaves the machine's record naming its dead Ray. A later run that
    joined a cluster on this machine left Ray Train's placement-group cleaner polling that
    dead Ray's state API for ever; now the joined cluster is the record while the run runs,
    and the dead record is gone afterwards."""
    gcs = ray_session._private.worker.global_worker.node.gcs_address
    dashboard = ray_session._private.worker.global_worker.node.address_info["webui_url"]
    claim_address_file("127.0.0.1:9")  # nothing listens on the discard port
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        out = subprocess.run([sys.executable, "-c", _JOIN.format(gcs=gcs)], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.split() == ["True", f"http://{dashboard}"], out.stderr[-2000:]
        assert address_record() is None
    finally:
        claim_address_file(gcs)  # the session's Ray, as its fixture recorded it


# Records which of its processes Ray stops, in order, and whether with SIGTERM first.
_STOP = """
import ray
from ray._private.node import Node
from rlaif_ray.cluster import connect, stop_local_ray
from rlaif_ray.config import load_config
stops = []
stop = Node._kill_process_type
def recorded(self, process_type, allow_graceful=False, **kwargs):
    if process_type in self.all_processes:
        stops.append(f"{process_type}:{'term' if allow_graceful else 'kill'}")
    return stop(self, process_type, allow_graceful=allow_graceful, **kwargs)
Node._kill_process_type = recorded
connect(load_config(None, ["ray.dashboard=false"]).ray)
node = ray._private.worker._global_node
started = [i.process for infos in node.all_processes.values() for i in infos]
stop_local_ray(False)
print(len(started), all(p.poll() is not None for p in started), ray.is_initialized(), *stops)
"""


@pytest.mark.slow
def test_stopping_a_local_ray_kills_its_monitor_first_then_stops_every_process():
    """The autoscaler monitor goes first, without the second's grace it would spend on
    SIGTERM reporting to a GCS already stopped; then Ray stops the rest, and nothing it
    started is left."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", _STOP], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    count, all_ended, initialized, first, *rest = out.stdout.split()
    assert int(count) >= 4 and all_ended == "True" and initialized == "False"
    assert first == "monitor:kill"
    assert rest[:2] == ["raylet:term", "gcs_server:term"]
    assert not any(stop.startswith("monitor") for stop in rest)
