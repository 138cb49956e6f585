"""Ray job submission: `rlaif-ray submit / status / logs` through the Ray Jobs SDK.

The job's entrypoint is `python -m rlaif_ray.job_entry run CONFIG [overrides]` (which
first checks that the cluster's `python` has what a run needs), run on the cluster with
this project as the runtime_env working dir (`.git`, `.venv`, `runs/`, caches and anything
.gitignore'd are left out)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JOB_ID_ENV = "RLAIF_RAY_JOB_ID"  # a submitted run's job id, in its environment
WORKING_DIR_EXCLUDES = [".git", ".venv", "venv", "runs", ".cache", "bench/results",
                        "**/__pycache__"]


class JobError(RuntimeError):
    """A job that is unknown, or ended FAILED or STOPPED."""


FAILED_STATES = ("FAILED", "STOPPED")  # a job that ended without succeeding
# A head just started (`ray start`) answers a submission with this until its job agent is
# up: retried for up to AGENT_WAIT_S.
AGENT_NOT_READY = "No available agent to submit job"
AGENT_WAIT_S = 60.0


def use_token_auth() -> None:
    """Ray 2.60 clusters use token auth by default (the token lives in ~/.ray/auth_token);
    Ray reads RAY_AUTH_MODE when it is imported, so call this before any Ray import."""
    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _client(address: str):
    use_token_auth()
    from ray.job_submission import JobSubmissionClient

    # The command's own lines say what was submitted: not Ray's client, which logs the
    # upload and each file it leaves out at INFO, and warns on every submission that it
    # leaves out `.git` (WORKING_DIR_EXCLUDES names it, and everything Ray's default does).
    os.environ.setdefault("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return JobSubmissionClient(address)


def submission_id(run_dir: str, now: datetime | None = None) -> str:
    """A readable job id from the run's name: `rlaif-<run>-<UTC time>`."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(run_dir.rstrip("/")).name).strip("-")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"rlaif-{name or 'run'}-{stamp}"


def entrypoint(command: str, args: list[str], python: str = "python") -> str:
    """The shell entrypoint of a job running `rlaif-ray <command> <args>`."""
    return shlex.join([python, "-m", "rlaif_ray.job_entry", command, *args])


def submit(address: str, args: list[str], job_id: str, metadata: dict[str, str],
           command: str = "run", working_dir: str = ".", env: dict[str, str] | None = None,
           python: str = "python") -> str:
    """Submit a job as `job_id` (`python` is the interpreter on the cluster); returns it."""
    runtime_env: dict[str, Any] = {"working_dir": working_dir,
                                   "excludes": WORKING_DIR_EXCLUDES}
    # The run's trackers tag it with the job's id.
    runtime_env["env_vars"] = {**(env or {}), JOB_ID_ENV: job_id}
    client = _client(address)
    return when_agent_ready(lambda: client.submit_job(
        entrypoint=entrypoint(command, args, python), runtime_env=runtime_env,
        submission_id=job_id, metadata=metadata), address)


def when_agent_ready(call: Callable[[], str], address: str, wait_s: float | None = None,
                     pause_s: float = 2.0) -> str:
    """`call()`, retried while the head's job agent is not up yet (for at most `wait_s`,
    default AGENT_WAIT_S); then a one-line JobError."""
    limit = AGENT_WAIT_S if wait_s is None else wait_s
    deadline = time.monotonic() + limit
    pause = threading.Event()
    while True:
        try:
            return call()
        except RuntimeError as err:
            if AGENT_NOT_READY not in str(err):
                raise
            if time.monotonic() >= deadline:
                raise JobError(f"the cluster at {address} has no job agent ready to take the "
                               f"job (waited {limit:g}s): check "
                               f"`ray status` on the head") from None
        pause.wait(pause_s)


def _known(call, job_id: str):
    """`call()`, with Ray's error for an unknown job turned into a one-line JobError."""
    try:
        return call()
    except RuntimeError as err:
        if "does not exist" in str(err) or "404" in str(err):
            raise JobError(f"no job {job_id!r} on this cluster") from None
        raise


def status(address: str, job_id: str) -> str:
    client = _client(address)
    state = _known(lambda: client.get_job_status(job_id), job_id)
    return str(getattr(state, "value", state))


def logs(address: str, job_id: str) -> str:
    client = _client(address)
    return _known(lambda: client.get_job_logs(job_id), job_id)


def check_succeeded(address: str, job_id: str) -> str:
    """The job's final state; JobError if it FAILED or was STOPPED."""
    state = status(address, job_id)
    raise_if_failed(address, job_id, state)
    return state


def raise_if_failed(address: str, job_id: str, state: str) -> None:
    """JobError with the last line of the job's message if `state` is FAILED or STOPPED."""
    if state in FAILED_STATES:
        info = _client(address).get_job_info(job_id)
        reason = (info.message or "").strip().splitlines()[-1:] or ["no message"]
        raise JobError(f"job {job_id} {state}: {reason[0]}")


async def follow(address: str, job_id: str) -> None:
    """Print the job's log as it is written, until the job ends."""
    async for lines in _client(address).tail_job_logs(job_id):
        print(lines, end="", flush=True)
