"""Soak: run the RLAIF loop while SIGKILLing random replicas (generator, judge, trainer
worker) after random iterations, then account for every item. First (unless
`--head-loss 0`) the run is started as its own process and the whole session, the driver
and the local Ray it started, is SIGKILLed once at a random point (`rlaif_ray.faults`);
the soak then resumes it with run.resume=true.

    python -m rlaif_ray.soak [CONFIG] [key=value ...] --faults 3 --seed 0   (or `make soak`)

Prints faults injected, faults survived, items lost and duplicates; exits 1 unless the run
completed with none lost and none duplicated."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

from rlaif_ray.config import load_config
from rlaif_ray.data.records import read_parts, table_dir
from rlaif_ray.faults import ENV, STAGES
from rlaif_ray.pipeline import Pipeline
from rlaif_ray.storage import StoragePath

TARGETS = ("generator", "judge", "trainer")


def _pids(pipeline: Pipeline, target: str) -> list[int]:
    if target == "generator":
        return [i["pid"] for i in pipeline.generators.call_all("info")]
    if target == "judge":
        return [i["pid"] for j in pipeline.judges if j.replicas is not None
                for i in j.replicas.call_all("info")]
    return list(pipeline.trainer.worker_pids().values())


class FaultInjector(threading.Thread):
    """Kills one random process of a random pool after each chosen iteration."""

    def __init__(self, pipeline: Pipeline, plan: dict[int, str], seed: int) -> None:
        super().__init__(daemon=True, name="fault-injector")
        self.pipeline, self.plan = pipeline, dict(plan)
        self.random = random.Random(seed)
        self.injected: list[dict[str, Any]] = []
        self.done = threading.Event()

    def _completed(self) -> int:
        path = self.pipeline.run_dir / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def run(self) -> None:
        while self.plan and not self.done.wait(0.5):
            completed = self._completed()
            for after in [k for k in self.plan if k < completed]:
                target = self.plan.pop(after)
                pids = _pids(self.pipeline, target)
                if not pids:
                    continue
                pid = self.random.choice(pids)
                os.kill(pid, signal.SIGKILL)
                self.injected.append({"after_iteration": after, "target": target, "pid": pid,
                                      "at": time.time()})
                print(f"[soak] killed {target} process {pid} after iteration {after}",
                      flush=True)


def account(run_dir: StoragePath, iterations: int, answers: int) -> dict[str, int]:
    """Items lost (candidates missing or without a verdict) and duplicates, over the run."""
    lost = duplicates = 0
    for k in range(iterations):
        ids = Counter(r["response_id"] for r in read_parts(
            table_dir(run_dir, "candidates", k), columns=["response_id"]))
        if not ids:
            lost += answers
            continue
        verdicts = Counter(r["response_id"] for r in read_parts(
            table_dir(run_dir, "verdicts", k), columns=["response_id"]))
        duplicates += sum(n - 1 for n in ids.values()) + sum(n - 1 for n in verdicts.values())
        lost += max(answers - len(ids), 0) + len(set(ids) - set(verdicts))
    return {"items_lost": lost, "duplicates": duplicates}


def lose_head(path: str | None, args: list[str], iterations: int,
              chooser: random.Random) -> dict[str, Any]:
    """Start the run as its own process and SIGKILL its whole session (driver and local
    Ray) at a random kill point in the first half of the run; returns the fault."""
    import subprocess

    point = f"{chooser.choice(STAGES)}@{chooser.randrange(max(iterations // 2, 1))}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env[ENV] = f"{point}/session"
    command = [sys.executable, "-m", "rlaif_ray.cli", "run", *([path] if path else []), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          start_new_session=True, check=False)
    if done.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the run to kill at {point} ended with {done.returncode}:\n"
                           f"{done.stderr[-2000:]}")
    print(f"[soak] killed the whole session (driver + local Ray) at {point}", flush=True)
    return {"target": "session", "point": point, "at": time.time()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlaif_ray.soak", description=__doc__)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head-loss", type=int, default=1, choices=(0, 1),
                        help="kill the whole session once first, then resume (default 1)")
    parser.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]")
    ns = parser.parse_args(argv)
    args = list(ns.args)
    path = args.pop(0) if args and "=" not in args[0] else None
    cfg = load_config(path, args)
    iterations = cfg.run.iterations
    chooser = random.Random(ns.seed)
    head_losses = [lose_head(path, args, iterations, chooser)] if ns.head_loss else []
    pipeline = Pipeline(load_config(path, [*args, "run.resume=true"]) if head_losses else cfg)
    slots = list(range(pipeline.start, iterations - 1))  # after k, while k+1.. still run
    plan = {k: chooser.choice(TARGETS) for k in chooser.sample(slots, min(ns.faults,
                                                                            len(slots)))}
    injector = FaultInjector(pipeline, plan, ns.seed)
    injector.start()
    completed, error = True, None
    try:
        pipeline.run()
    except Exception as err:  # reported below: a fault the run did not survive
        completed, error = False, f"{type(err).__name__}: {err}"
    injector.done.set()
    injector.join(timeout=5)
    answers = len(pipeline.prompts) * cfg.generator.samples_per_prompt
    faults = head_losses + injector.injected
    report = {"faults_injected": len(faults),
              "faults_survived": len(faults) if completed else 0,
              "run_completed": completed, "error": error,
              **account(pipeline.run_dir, iterations, answers),
              "faults": faults}
    (pipeline.run_dir / "soak.json").write_text(json.dumps(report, indent=2))
    print(f"faults injected: {report['faults_injected']}, faults survived: "
          f"{report['faults_survived']}, items lost: {report['items_lost']}, duplicates: "
          f"{report['duplicates']}" + (f", error: {error}" if error else ""))
    ok = completed and report["items_lost"] == 0 and report["duplicates"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
