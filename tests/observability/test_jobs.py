"""Job submission logic without a cluster: the job's name and where its outputs go."""

from datetime import UTC, datetime

import pytest

from rlaif_ray.cli_handlers import shared_run_dir
from rlaif_ray.errors import ConfigError
from rlaif_ray.jobs import submission_id


def test_submission_id_is_readable_and_named_after_the_run():
    now = datetime(2026, 11, 28, 21, 5, 9, tzinfo=UTC)
    assert submission_id("/shared/runs/llama 8b/", now) == "rlaif-llama-8b-20261128-210509"


def test_a_job_never_writes_to_its_temporary_working_dir():
    assert shared_run_dir("/shared/runs/a", None) == "/shared/runs/a"
    assert shared_run_dir("s3://b/runs/a", None) == "s3://b/runs/a"
    assert shared_run_dir("runs/a", "/shared/") == "/shared/runs/a"
    assert shared_run_dir("runs/a", "gs://b/runs/") == "gs://b/runs/runs/a"
    for storage in (None, "relative/too"):
        with pytest.raises(ConfigError, match=r"run.dir 'runs/a' is relative.*--storage"):
            shared_run_dir("runs/a", storage)
    with pytest.raises(ConfigError, match=r"--storage 'ftp://h/x' has scheme 'ftp'"):
        shared_run_dir("runs/a", "ftp://h/x")


def test_a_run_dir_uri_pyarrow_cannot_open_is_refused_before_anything_starts():
    from rlaif_ray.config import load_config

    assert load_config(None, ["run.dir=s3://bucket/runs/a"]).run.dir == "s3://bucket/runs/a"
    with pytest.raises(ConfigError, match=r"key 'run.dir' has scheme 'ftp'; use a local"):
        load_config(None, ["run.dir=ftp://host/runs/a"])


def test_a_submission_waits_for_a_head_whose_job_agent_is_starting():
    from rlaif_ray.jobs import AGENT_NOT_READY, JobError, when_agent_ready

    answers = [RuntimeError(f"Request failed with status code 500: {AGENT_NOT_READY}, "
                            "please try again later.")] * 2 + ["rlaif-x-1"]

    def submit():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert when_agent_ready(submit, "http://head:8265", wait_s=30, pause_s=0.01) == "rlaif-x-1"
    answers[:] = [RuntimeError(AGENT_NOT_READY)] * 1000
    with pytest.raises(JobError, match=r"^the cluster at http://head:8265 has no job agent "
                                       r"ready to take the job \(waited 0.05s\)"):
        when_agent_ready(submit, "http://head:8265", wait_s=0.05, pause_s=0.01)
    answers[:] = [RuntimeError("Request failed with status code 400: bad runtime_env")]
    with pytest.raises(RuntimeError, match="bad runtime_env"):  # not retried
        when_agent_ready(submit, "http://head:8265", wait_s=30, pause_s=0.01)


def test_a_job_on_an_interpreter_without_the_stack_fails_in_one_line(tmp_path):
    """The job's entrypoint run as a head's bare `python` would run it, in the uploaded
    working dir (this project): one line naming the interpreter and what it lacks."""
    import subprocess
    import sys
    from pathlib import Path

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")],
                   check=True)
    bare = str(tmp_path / "bare" / "bin" / "python")
    done = subprocess.run([bare, "-m", "rlaif_ray.job_entry", "run", "conf/default.yaml"],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: the cluster's interpreter {bare} lacks omegaconf, "
                                  "ray, torch"), done.stderr
    assert "--python" in done.stderr
