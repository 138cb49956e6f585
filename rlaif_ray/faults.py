"""Kill points for fault tests. With `RLAIF_RAY_KILL_AT=<stage>@<iteration>` in its
environment the driver SIGKILLs itself when the run reaches that point; with
`<stage>@<iteration>/session` it kills its whole process group (the driver and the local
Ray it started: a head loss); with `<stage>@<iteration>/interrupt` it sends SIGINT to its
process group, as Ctrl-C in a terminal does (printing the time to stderr first); with
`<stage>@<iteration>/pause=<file>` it waits there until `<file>` exists (at most
`PAUSE_BOUND_S`), so a test can look at a run that stands still at a known point.

Stages: `rollout` (after the first judged batch), `train` (once the trainer has taken the
batch), `sync` (the new policy arrived, the generators not yet updated), `commit` (the
iteration's checkpoint is on disk, its metrics line is not).

With `RLAIF_RAY_KILL_TRAINER_AT=<point>@<iteration>[,...]` in the driver's environment, the
trainer's rank 0 SIGKILLs itself: the process that first holds the rank at the first entry,
the one Ray Train restores in its place at the second, and so on. Points: `train` (the
batch taken, not trained on), `publish` (the new policy posted to the exchange; with the
collective transport, its broadcast group not yet open), `broadcast` (every member joined
the group, nothing sent), `handover` (the policy handed over, the iteration's checkpoint
not reported).

A seam for faults that cannot be timed from outside the process; unset, it does nothing."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable

STAGES = ("rollout", "train", "sync", "commit")
ENV = "RLAIF_RAY_KILL_AT"
TRAINER_ENV = "RLAIF_RAY_KILL_TRAINER_AT"
PAUSE_BOUND_S = 600.0  # the longest a `pause=` point stands still
# The line an interrupt point prints to stderr before its SIGINT: the point, the wall time
# it was sent at and the driver's pid (the session of a run started in its own).
SIGINT_LINE = re.compile(r"\[fault\] SIGINT at (\S+), t=([\d.]+), pid=(\d+)")


def _poll(condition: Callable[[], bool], bound_s: float) -> None:
    """Return once `condition()` holds, or after `bound_s` seconds."""
    deadline = time.monotonic() + bound_s
    pause = threading.Event()
    while not condition() and time.monotonic() < deadline:
        pause.wait(0.2)


def kill_point(stage: str, iteration: int, until: Callable[[], bool] | None = None,
               wait_s: float = 120.0) -> None:
    """SIGKILL the driver here if `RLAIF_RAY_KILL_AT` names this stage and iteration, once
    `until()` holds (polled up to `wait_s`)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, scope = spec.partition("/")
    if point != f"{stage}@{iteration}":
        return
    if until is not None:
        _poll(until, wait_s)
    if scope.startswith("pause="):
        resume = scope.removeprefix("pause=")
        _poll(lambda: os.path.exists(resume), PAUSE_BOUND_S)
        return
    if scope == "interrupt":
        print(f"[fault] SIGINT at {point}, t={time.time():.3f}, pid={os.getpid()}",
              file=sys.stderr, flush=True)
        os.killpg(os.getpgrp(), signal.SIGINT)
        return
    if scope == "session":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def trainer_kill_point(spec: str | None, predecessors: int, point: str,
                       iteration: int) -> None:
    """SIGKILL this trainer process (rank 0, with `predecessors` processes before it in that
    rank) if entry `predecessors` of `spec` (`RLAIF_RAY_KILL_TRAINER_AT`, which the driver
    hands to its workers) names this point and iteration."""
    kills = spec.split(",") if spec else []
    if predecessors < len(kills) and kills[predecessors] == f"{point}@{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)
