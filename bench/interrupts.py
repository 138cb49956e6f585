"""`python -m bench interrupts [--runs N]`: Ctrl-C at every stage, many times over: a real
`rlaif-ray run` of the toy task (tests/toy.py: 4 prompts x 4 answers, a rule judge, 2
iterations) is sent SIGINT to its process group (what a terminal's Ctrl-C does, through
`rlaif_ray.faults`) at each stage of its last iteration, N times per stage and mode
(`run.mode` sync and async), alternating the stages within each round.

Counted per stage and mode: exits other than 130 (a crash after the "interrupted" line was
printed reads as -11 or 139), runs whose stderr lacks that line or shows a traceback, the
seconds from the signal to the exit (median, max), and processes of the run's Ray still alive
5 s after it exited. The ratio is the share of runs that exited as they should (goal 1.0).
Writes bench/results/interrupts.json."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from rlaif_ray.faults import ENV, SIGINT_LINE, STAGES

CONFIG = str(Path(__file__).resolve().parents[1] / "conf" / "default.yaml")
TOY_JUDGE = ("judges=[{name: rules, kind: rule, checks: [{type: regex, "
             "pattern: '^\\s*[aeiouAEIOU]'}]}]")
ITERATIONS = 2
MODES = ("sync", "async")
RUN_TIMEOUT_S = 600
# A shell's background job starts with SIGINT ignored, and an ignored signal stays ignored
# in a child: the run is started with Python's own Ctrl-C handler put back.
LAUNCH = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
          " sys.argv[0] = 'rlaif-ray'; runpy.run_module('rlaif_ray.cli', run_name='__main__')")
INTERRUPTED = re.compile(r"interrupted in stage \w+ of iteration \d+; completed iterations "
                         r"are kept: continue with run.resume=true")


def session_processes(session_id: int) -> list[int]:
    """Processes of session `session_id` (from /proc): a run started in a session of its
    own (its pid is the session's id) shares it with every process of the Ray it starts:
    raylet, GCS, dashboard, actors and workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name
        if int(fields[3]) == session_id:
            found.append(int(entry.name))
    return found


def interrupt_once(point: str, mode: str, cache: str, work: Path) -> dict[str, Any]:
    """One run interrupted at `point` (stage@iteration); what its exit looked like."""
    run_dir = work / f"{mode}-{point}-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({ENV: f"{point}/interrupt", "RLAIF_RAY_CACHE": cache})
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, "run", CONFIG, f"run.dir={run_dir}",
         f"cache_dir={cache}", TOY_JUDGE, f"run.iterations={ITERATIONS}", f"run.mode={mode}",
         "prompts.limit=4", "generator.samples_per_prompt=4"],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        start_new_session=True)
    ended = time.time()
    sent = SIGINT_LINE.search(done.stderr)
    time.sleep(5)  # what the kernel and Ray have not ended by then is left behind
    left = session_processes(int(sent[3])) if sent else []
    for pid in left:  # do not let one run's leftovers slow the next
        os.kill(pid, signal.SIGKILL)
    return {"point": point, "mode": mode, "returncode": done.returncode,
            "message": bool(INTERRUPTED.search(done.stderr)),
            "traceback": bool(re.search(r"(?m)^Traceback|KeyboardInterrupt", done.stderr)),
            "exit_s": ended - float(sent[2]) if sent else None, "left_processes": len(left),
            "stderr_tail": done.stderr[-600:] if done.returncode != 130 else ""}


def cell(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts of one stage and mode."""
    seconds = [r["exit_s"] for r in rows if r["exit_s"] is not None]
    return {"runs": len(rows),
            "bad_exits": sum(r["returncode"] != 130 for r in rows),
            "exit_codes": sorted({r["returncode"] for r in rows}),
            "missing_message": sum(not r["message"] for r in rows),
            "tracebacks": sum(r["traceback"] for r in rows),
            "runs_leaving_processes": sum(r["left_processes"] > 0 for r in rows),
            "exit_s_median": statistics.median(seconds) if seconds else None,
            "exit_s_max": max(seconds) if seconds else None}


def run(runs: int = 20) -> dict[str, Any]:
    from rlaif_ray.models import build_model

    cache = os.environ.get("RLAIF_RAY_CACHE") or tempfile.mkdtemp(prefix="bench-models-")
    build_model("tiny-llama", cache)
    points = [f"{stage}@{ITERATIONS - 1}" for stage in STAGES]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-interrupts-") as work:
        for round_ in range(runs):
            for mode in MODES:
                for point in points:
                    row = interrupt_once(point, mode, cache, Path(work))
                    rows.append(row)
                    print(f"round {round_ + 1}/{runs} {mode:5} {point:9} exit "
                          f"{row['returncode']} after {row['exit_s'] or float('nan'):.1f} s",
                          flush=True)
            if round_ + 1 < runs:  # a long invocation stopped early keeps what it counted
                write_result("interrupts", {**summary(rows, points), "rounds": round_ + 1,
                                            "complete": False})
    return {**summary(rows, points), "rounds": runs, "complete": True}


def summary(rows: list[dict[str, Any]], points: list[str]) -> dict[str, Any]:
    """The result of the runs `rows`: counts per stage and mode, the share of good exits."""
    cells = {f"{mode} {point}": cell([r for r in rows if (r["mode"], r["point"]) ==
                                      (mode, point)])
             for mode in MODES for point in points}
    good = sum(r["returncode"] == 130 and r["message"] and not r["traceback"] for r in rows)
    bad = [r for r in rows if r["stderr_tail"]]
    return {"ratio": good / len(rows), "goal": 1.0,
            "detail": ", ".join(f"{name}: {c['bad_exits']}/{c['runs']} bad"
                                for name, c in cells.items()),
            "cells": cells, "bad_runs": bad}
