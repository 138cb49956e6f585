"""Ray job submission, dashboard metrics and the state API against a real local head
(`ray start --head`, dashboard on 127.0.0.1) that the test starts and stops."""

import os
import re
import subprocess
import sys

import pytest
from toy import TOY_JUDGE, assert_dataset_complete
from watch import (
    RAY,
    alive_actor_names,
    dashboard_answers,
    free_ports,
    has_series,
    metrics_text,
    wait_for,
    wait_for_series,
)

from rlaif_ray import jobs
from rlaif_ray.cli import main
from rlaif_ray.cluster import address_record, release_address_file
from rlaif_ray.faults import ENV
from rlaif_ray.metrics import read_metrics
from rlaif_ray.storage import StoragePath
from rlaif_ray.train.checkpoints import list_checkpoints

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def head(tmp_path_factory, s3_env):
    """A head whose nodes reach the test's S3 server through their environment, as cluster
    nodes reach a bucket with their own credentials."""
    gcs, dashboard, metrics, agent, client = free_ports(5)
    # Stopped with SIGTERM: Ray 2.60's head then drains itself for up to 30 s (for Serve
    # replicas, which this head has none of) before it stops its processes.
    env = {**os.environ, **s3_env, "RAY_metrics_report_interval_ms": "1000",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path_factory.mktemp("head") / "head.log"
    record = address_record()  # `ray start` records the head as this machine's Ray
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--metrics-export-port={metrics}", f"--dashboard-agent-listen-port={agent}",
             f"--ray-client-server-port={client}", "--num-cpus=4", "--include-dashboard=true"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for(lambda: proc.poll() is None and dashboard_answers(url), 120, "dashboard")
        yield {"url": url, "metrics": f"http://127.0.0.1:{metrics}/metrics", "env": env}
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        release_address_file(f"127.0.0.1:{gcs}", record)


def test_submitted_run_exposes_metrics_and_leaves_its_outputs_in_the_bucket(
        head, model_cache, capsys, monkeypatch, tmp_path):
    """A job given `--storage s3://...` and a relative run.dir: metrics and named actors
    while it runs (checked while it stands still in its second update, through the fault
    seam that `submit` forwards: no race with a job that might end first), and the policy,
    data and checkpoints in the bucket after it ends."""
    resume = tmp_path / "resume"
    monkeypatch.setenv(ENV, f"train@1/pause={resume}")
    args = ["conf/default.yaml", "run.dir=job-run", f"cache_dir={model_cache}", TOY_JUDGE,
            "prompts.limit=4", "run.iterations=3", "generator.samples_per_prompt=4",
            "ray.num_cpus=null"]
    assert main(["submit", "--address", head["url"], "--python", sys.executable,
                 "--storage", "s3://rlaif/jobs", *args]) == 0
    out = capsys.readouterr().out
    assert "outputs in s3://rlaif/jobs/job-run" in out
    job_id = re.search(r"submitted (\S+)", out).group(1)

    def running(check):
        def condition():
            status = jobs.status(head["url"], job_id)
            if status in ("FAILED", "STOPPED"):
                raise AssertionError(f"job {status}: {jobs.logs(head['url'], job_id)[-3000:]}")
            return check()
        return condition

    names = wait_for(running(lambda: {"generator-0", "rlaif-train-exchange"} <= (
        n := alive_actor_names(head["url"], head["env"])) and n), 300, "named actors")
    assert "generator-0" in names
    labels = {"run": "job-run", "job": job_id}
    wait_for(running(lambda: has_series(metrics_text(head["metrics"]),
                                        "ray_rlaif_reward_mean", **labels)),
             300, "rlaif metrics with run and job labels on the endpoint")
    # The rest of iteration 0's gauges, set with it (they may show a scrape later).
    wait_for_series(head["metrics"], [(name, labels) for name in (
        "ray_rlaif_tokens_per_s", "ray_rlaif_votes_per_s", "ray_rlaif_kept_fraction",
        "ray_rlaif_kl", "ray_rlaif_sync_seconds", "ray_rlaif_replicas",
        "ray_rlaif_queue_depth", "ray_rlaif_iteration")], 120)
    assert jobs.status(head["url"], job_id) == "RUNNING"
    assert "iteration 1 done" not in jobs.logs(head["url"], job_id)  # still paused
    resume.touch()

    wait_for(lambda: jobs.status(head["url"], job_id) in ("SUCCEEDED", "FAILED", "STOPPED"),
             600, "job end")
    assert main(["status", job_id, "--address", head["url"]]) == 0
    assert f"{job_id}: SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", job_id, "--address", head["url"]]) == 0
    log = capsys.readouterr().out
    assert "run summary" in log and "iteration 2 done: reward" in log
    # a job log is plain lines: no redrawn bars, no worker chatter, nothing alarming
    assert not re.search(r"\x1b\[|\r|\(pid=|Traceback|Failed", log), log[-3000:]
    run_dir = "s3://rlaif/jobs/job-run"
    assert [r["iteration"] for r in read_metrics(run_dir)] == [0, 1, 2]
    assert_dataset_complete(run_dir, 3, 4 * 4)
    assert [c.iteration for c in list_checkpoints(run_dir)] == [1, 2]
    policy = StoragePath.of(run_dir) / "policy"
    assert (policy / "model.safetensors").is_file() and (policy / "config.json").is_file()


def test_submit_and_status_tell_the_truth_on_a_token_auth_head(head, model_cache, tmp_path):
    """The CLI as a user runs it, with no RAY_AUTH_MODE in its environment: submit sets
    token auth itself, refuses a relative run.dir, names the job after the run, and submit
    --follow and status exit 1 for a FAILED job; an unknown job id is a one-line error."""
    env = {k: v for k, v in head["env"].items() if k != "RAY_AUTH_MODE"}
    cli = [sys.executable, "-m", "rlaif_ray.cli"]

    def rlaif(*args):
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True,
                              timeout=300)

    refused = rlaif("submit", "--address", head["url"], "conf/default.yaml", "run.dir=runs/x")
    assert refused.returncode == 2 and "run.dir 'runs/x' is relative" in refused.stderr

    run_dir = tmp_path / "doomed"
    failed = rlaif("submit", "--address", head["url"], "--follow", "--python",
                   "/nonexistent/python", "conf/default.yaml", f"run.dir={run_dir}",
                   f"cache_dir={model_cache}")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    job_id = re.search(r"submitted (rlaif-doomed-\d{8}-\d{6}) ", failed.stdout).group(1)
    assert f"job {job_id} FAILED" in failed.stderr and "Traceback" not in failed.stderr
    # Ray's client says nothing of its own (the upload, the files it leaves out)
    assert not re.search(r"INFO|WARNING", failed.stderr), failed.stderr
    entry = re.search(r"Running entrypoint for job \S+: (.*)", failed.stdout).group(1)
    assert entry.count("run.dir=") == 1 and "rlaif_ray.job_entry run" in entry
    info = jobs._client(head["url"]).get_job_info(job_id)
    assert info.metadata == {"config": "conf/default.yaml", "run_dir": str(run_dir)}

    status = rlaif("status", job_id, "--address", head["url"])
    assert status.returncode == 1 and f"{job_id}: FAILED" in status.stdout
    assert status.stderr.startswith(f"error: job {job_id} FAILED: ")  # and why
    unknown = rlaif("status", "no-such-job", "--address", head["url"])
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no job 'no-such-job' on this cluster"
