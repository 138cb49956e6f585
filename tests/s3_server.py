"""A real S3-compatible server on 127.0.0.1 for storage tests: moto's standalone server
(`moto[server]`), reached the way a user reaches S3, through the standard AWS environment
variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""

import contextlib
import os
import subprocess
import sys
import time

import requests
from vllm_server import free_port

SERVER_START_S = 60


@contextlib.contextmanager
def s3_server(log):
    """Start the server; yields the environment variables that point S3 clients at it."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode} (see {log})")
            try:
                requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto server not up within {SERVER_START_S}s") from None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)  # returns early only if it died
        yield {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def create_bucket(env: dict[str, str], name: str) -> str:
    """Create bucket `name` on the server of `env`; returns its URI."""
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key=env[
        "AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"], region=env[
        "AWS_DEFAULT_REGION"], allow_bucket_creation=True).create_dir(name)
    return f"s3://{name}"


@contextlib.contextmanager
def environment(env: dict[str, str]):
    """`env` set in this process for the block."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
