"""Watching a running cluster from a test the way a user does: the dashboard's HTTP API,
`ray list actors`, and the Prometheus metrics endpoint."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

RAY = str(Path(sys.executable).parent / "ray")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for(condition, timeout_s, what):
    """Poll `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        pause.wait(0.5)
    raise TimeoutError(f"{what} not seen within {timeout_s}s")


def dashboard_answers(url):
    try:
        return requests.get(f"{url}/api/version", timeout=2).status_code < 500
    except requests.RequestException:
        return False


def metrics_text(url):
    try:
        return requests.get(url, timeout=5).text
    except requests.RequestException:
        return ""


def alive_actors(dashboard_url, env=None) -> list[dict]:
    """The live actors (name, class_name, ...), through `ray list actors` against the
    dashboard (token auth, as Ray 2.60 heads use). A failed listing prints its error (shown
    if the test fails) and counts as no actors."""
    out = subprocess.run([RAY, "list", "actors", "--filter", "state=ALIVE", "--limit", "500",
                          "--address", dashboard_url, "--format", "json"],
                         capture_output=True, text=True,
                         env={**(env or os.environ), "RAY_AUTH_MODE": "token"})
    if out.returncode != 0:
        print(f"ray list actors: exit {out.returncode}: {out.stderr.strip()[-500:]}")
        return []
    text = out.stdout.strip()  # none alive: Ray says "No resource in the cluster"
    return json.loads(text) if text.startswith("[") else []


def alive_actor_names(dashboard_url, env=None) -> set[str]:
    """Names of the live named actors (`alive_actors`)."""
    return {a["name"] for a in alive_actors(dashboard_url, env) if a.get("name")}


def has_series(text, name, **labels):
    """Whether the Prometheus exposition `text` holds series `name` with these labels."""
    return any(line.startswith(name + "{") and all(f'{k}="{v}"' in line
                                                   for k, v in labels.items())
               for line in text.splitlines())


def wait_for_series(endpoint, series, timeout_s):
    """The endpoint's exposition text once it holds every (name, labels) of `series`. Ray
    exports gauges on an interval, so values set together may first show in different
    scrapes; a timeout names the series still missing."""
    missing = list(series)

    def complete():
        text = metrics_text(endpoint)
        missing[:] = [(n, labels) for n, labels in series if not has_series(text, n, **labels)]
        return not missing and text

    try:
        return wait_for(complete, timeout_s, "every series")
    except TimeoutError:
        raise AssertionError(f"not on {endpoint} within {timeout_s}s: {missing}") from None
