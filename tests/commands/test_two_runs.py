"""Two runs on one machine at once, each with its own local Ray: the second is killed in
the middle of an iteration (a head loss: its Ray goes with it) while the first stands in its
second update, and the first then completes untouched. Ray records one "current" Ray per
machine, and Ray Train's placement-group cleaner finds the state API through that record
unless told otherwise: pointed at the other run's Ray, where this run's trainer is unknown,
it would take the trainer for dead and remove its placement group."""

import os
import signal
import subprocess
import sys

import pytest
from toy import toy_args
from watch import wait_for

from rlaif_ray.faults import ENV
from rlaif_ray.metrics import read_metrics

pytestmark = pytest.mark.slow


def start_run(args, env):
    return subprocess.Popen([sys.executable, "-m", "rlaif_ray.cli", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_a_run_beside_another_survives_the_others_head_loss(model_cache, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    resume = tmp_path / "resume"
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first = start_run(toy_args(model_cache, first_dir, 3),
                      {**env, ENV: f"train@1/pause={resume}"})
    second = None
    try:
        wait_for(lambda: first.poll() is not None or (
            (first_dir / "metrics.jsonl").exists() and read_metrics(first_dir)), 600,
            "the first run's iteration 0")
        assert first.poll() is None, first.stdout.read()
        # The second run loses its head (its driver and Ray) in its first rollout; until
        # then the machine's record of the current Ray names the second run's.
        second = start_run(toy_args(model_cache, second_dir, 3),
                           {**env, ENV: "rollout@0/session"})
        assert second.wait(timeout=600) == -signal.SIGKILL, second.stdout.read()
        resume.touch()
        out, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    rows = read_metrics(first_dir)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["trainer_restarts"] for r in rows] == [0, 0, 0]  # its trainer never lost
    assert "Traceback" not in out and "error" not in out.lower(), out
