"""A plain local run, watched as a user would: the dashboard it prints answers and lists the
run's named actors and its trainer while the run stands still in its first update (the
fault seam's pause: no race with a run that might end first), its Prometheus endpoint has
every rlaif series labelled with the run within seconds of the first iteration, and --hold
keeps the dashboard after the run."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
from toy import toy_args
from watch import (
    RAY,
    alive_actor_names,
    alive_actors,
    dashboard_answers,
    free_ports,
    wait_for,
    wait_for_series,
)

from rlaif_ray.faults import ENV
from rlaif_ray.metrics import GAUGES

pytestmark = pytest.mark.slow


def train_runs(url):
    """The Ray Train runs the dashboard's Train view lists."""
    import requests

    token = subprocess.run([RAY, "get-auth-token"],
                           capture_output=True, text=True).stdout.strip()
    try:
        reply = requests.get(f"{url}/api/train/v2/runs/v1", timeout=5,
                             headers={"Authorization": f"Bearer {token}"})
        return reply.json().get("train_runs") if reply.ok else None
    except (requests.RequestException, ValueError):
        return None


def test_a_local_run_shows_its_dashboard_and_labelled_metrics(model_cache, tmp_path):
    dashboard, metrics = free_ports(2)
    run_dir = tmp_path / "watched"
    args = toy_args(model_cache, run_dir, 3) + [f"ray.dashboard_port={dashboard}",
                                               f"ray.metrics_export_port={metrics}"]
    resume = tmp_path / "resume"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env[ENV] = f"train@0/pause={resume}"
    proc = subprocess.Popen([sys.executable, "-m", "rlaif_ray.cli", "run", "--hold", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()

    def printed(pattern):
        def condition():
            while not lines.empty():
                seen.append(lines.get().rstrip("\n"))
            if proc.poll() is not None and lines.empty():
                raise AssertionError("run ended early:\n" + "\n".join(seen[-40:]))
            return next((m for x in seen if (m := re.search(pattern, x))), None)
        return condition

    try:
        url = wait_for(printed(r"Ray dashboard: (http://127\.0\.0\.1:\d+)"), 120, "URL")[1]
        assert url == f"http://127.0.0.1:{dashboard}"
        wait_for(lambda: {"generator-0", "rlaif-train-exchange", "rlaif-metrics"} <= (
            alive_actor_names(url, env)), 300, "named actors on the dashboard")
        # Ray Train's own actors, less the ones a run has no use for: a dataset manager
        # (its workers read no Ray Dataset) and a preemption watcher (no cloud here).
        classes = {a["class_name"] for a in alive_actors(url, env)}
        assert {"TrainController", "RayTrainWorker", "PlacementGroupCleaner"} <= classes
        assert not classes & {"DatasetManager", "PreemptionWatcher"}, classes
        runs = wait_for(lambda: train_runs(url), 300, "the trainer in the Train view")
        assert runs[0]["name"].startswith("trainer-")
        assert printed(r"iteration 0 done")() is None  # all seen during the pause
        resume.touch()
        wait_for(printed(r"iteration 0 done"), 600, "iteration 0")
        endpoint = f"http://127.0.0.1:{metrics}/metrics"
        # Within a minute of the iteration's end (seconds here: the run sets Ray's report
        # interval to 2 s); a bound, not a timing: how fast is not this test's business.
        # Not every gauge has a value in every iteration: length_bias needs lengths that
        # vary, and the costs a priced judge (this run's rule judge has no price).
        sometimes = {"length_bias", "judge_cost", "cost_per_kept_verdict"}
        watched = {"run": "watched"}
        wait_for_series(endpoint, [
            *((f"ray_rlaif_{g[0]}", watched) for g in GAUGES if g[0] not in sometimes),
            ("ray_rlaif_judge_tokens", {**watched, "judge": "rules", "side": "prompt"}),
            ("ray_rlaif_replicas", {**watched, "pool": "trainer"})], 60)
        wait_for(printed(r"holding the dashboard at"), 600, "the end of the run")
        assert dashboard_answers(url)  # held after the run, until Ctrl-C
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "\n".join(seen)
    assert not re.search(r"\(pid=|Traceback|Failed|\x1b\[", out), out
    assert all(len(line) <= 80 for line in seen if not re.search(r"/tmp|http", line)), out
