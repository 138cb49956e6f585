"""The suite's slow-to-build models, built in the background while the tests that do not
need them run.

`tiny-judge` is minutes of fine-tuning on 2 cores (`tiny-judge-first-slot` more, on top of
it): on a fresh machine, built up front, they added ~7 of the suite's minutes. The suite
leaves a core idle about a fifth of its time (waits for engines, processes and Ray), so the
build runs beside it at idle CPU priority (SCHED_IDLE: it gets only CPU time no test
wants) and the tests that need the judges run last (mark `judge_model`), each first waiting
for the build outside its own timeout. A build that failed is retried by the test's own
`build_model`, which then raises its error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

JUDGE_MODELS = ("tiny-judge", "tiny-judge-first-slot")
WAIT_S = 3600  # far above a full build on a slow host (~7 min on 2 idle cores here)


def _idle_priority() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux: the lowest nice level instead
        os.nice(19)


class BackgroundBuild:
    """`rlaif-ray models build` of `names` into `cache`, at idle priority, logged to
    `log_path`; started only for the models not built yet."""

    def __init__(self, cache: Path, names: tuple[str, ...], log_path: Path) -> None:
        from rlaif_ray.models import is_built

        self.log_path = log_path
        self.missing = [name for name in names if not is_built(name, cache)]
        self.process: subprocess.Popen | None = None
        self.reported = False
        if self.missing:
            with open(log_path, "w") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "rlaif_ray.cli", "models", "build", "--cache",
                     str(cache), *self.missing], stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, preexec_fn=_idle_priority)

    def wait(self) -> str | None:
        """Block until the build has ended (bounded). The first time: a line saying how it
        went; afterwards, and when nothing was built: None."""
        if self.process is None or self.reported:
            return None
        self.reported = True
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            return f"still building after {WAIT_S} s (log: {self.log_path})"
        waited = time.monotonic() - started
        if code != 0:
            tail = self.log_path.read_text()[-2000:]
            return f"build failed with exit code {code} (log: {self.log_path}):\n{tail}"
        return f"built {', '.join(self.missing)} in the background (waited {waited:.0f} s)"

    def stop(self) -> None:
        """End a build still running (the session ended first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
