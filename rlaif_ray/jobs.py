"""Ray job submission: `rlaif-ray submit / status / logs` through the Ray Jobs SDK.

The job's entrypoint is `python -m rlaif_ray.cli run CONFIG [overrides]`, run on the
cluster with this project as the runtime_env working dir (`.git`, `.venv`, `runs/`, caches
and anything .gitignore'd are left out)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

WORKING_DIR_EXCLUDES = [".git", ".venv", "runs", ".cache", "bench/results", "**/__pycache__"]


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    # Ray 2.60 clusters use token auth by default; the token lives in ~/.ray/auth_token.
    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    return JobSubmissionClient(address)


def entrypoint(command: str, args: list[str], python: str = "python") -> str:
    """The shell entrypoint of a job running `rlaif-ray <command> <args>`."""
    return shlex.join([python, "-m", "rlaif_ray.cli", command, *args])


def submit(address: str, args: list[str], command: str = "run", working_dir: str = ".",
           env: dict[str, str] | None = None, python: str = "python") -> str:
    """Submit a job (`python` is the interpreter on the cluster); returns its id."""
    runtime_env = {"working_dir": working_dir, "excludes": WORKING_DIR_EXCLUDES}
    if env:
        runtime_env["env_vars"] = env
    return _client(address).submit_job(entrypoint=entrypoint(command, args, python),
                                       runtime_env=runtime_env)


def status(address: str, job_id: str) -> str:
    return str(_client(address).get_job_status(job_id))


def logs(address: str, job_id: str) -> str:
    return _client(address).get_job_logs(job_id)


async def follow(address: str, job_id: str) -> None:
    """Print the job's log as it is written, until the job ends."""
    async for lines in _client(address).tail_job_logs(job_id):
        print(lines, end="", flush=True)
