"""`python -m bench learning [--tasks T ...] [--arms A ...] [--seeds N] [--iterations K]
[--no-trl] [--work DIR]`: how much and how fast the shipped defaults learn, over tasks of
different shapes and several seeds, against other settings and TRL's GRPOTrainer.

Every run is a real `rlaif-ray run` of the embedded default (tiny-llama, 16 prompts, real
vLLM, Ray and DeepSpeed) with the task's overrides and the arm's. Arms alternate within
each seed, so a drift of the machine meets every arm alike. None of the tasks was tuned on.

Tasks:
- `letter-start` (binary, first token): 1 if the answer starts with a letter (no leading
  space); 34% of the initial policy's answers do.
- `digits` (graded, several thresholds): a third for each of 1, 2 and 3 digits in an answer
  of up to 16 tokens.
- `plain-ascii` (the whole answer): 1 if every character is printable ASCII.
- `ascii-prefix` (graded, long answers): a third for each of the first 16, 32 and 64
  characters all printable ASCII, in answers of up to 40 tokens (~140 characters).
- `judge-pairwise`: `tiny-judge` in pairwise mode (4 answers per prompt, both orders).
- `judge-pointwise`: the shipped default run as it is (`tiny-judge`, pointwise).

Rule tasks are read by their reward; LLM-judge tasks by the true score of their answers
(the share of the rubric's properties they have, which the judge was trained to see:
`bench.experiments.true_score`), whatever the judge said. TRL's GRPOTrainer (the `peer`
extra) runs every rule task with the same prompts, answers, tokens, reward (rlaif-ray's own
rule code), learning rate, KL coefficient, clip range (TRL's epsilon) and optimizer steps.

Per task and arm, over seeds: the score curve (median, min, max per iteration), the final
score (mean of the last two iterations), iterations and wall seconds (from the command's
start, and less the start-up) to the task's target, 80% of the best arm's median final
score. Results go to
bench/results/learning.json, plots to docs/learning/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS, format_spread, machine, plot_curves, spread
from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.data.records import read_parts, table_dir
from rlaif_ray.lora import ATTENTION_MLP

PLOTS = Path(__file__).resolve().parents[1] / "docs" / "learning"
TRL = "trl grpo"
TARGET_SHARE = 0.8


def rule_judge(*patterns: str) -> str:
    """A `judges=[...]` override: one rule judge scoring the share of `patterns` matched."""
    checks = ", ".join(f"{{type: regex, pattern: '{p}'}}" for p in patterns)
    return f"judges=[{{name: rules, kind: rule, checks: [{checks}]}}]"


@dataclass(frozen=True)
class Task:
    """What is learned: the config overrides that set it, and its rule judge (None: an LLM
    judge, read by the true score)."""

    shape: str
    overrides: list[str] = field(default_factory=list)
    rule: str | None = None

    @property
    def all_overrides(self) -> list[str]:
        return ([self.rule] if self.rule else []) + self.overrides


TASKS = {
    "letter-start": Task("binary, first token", rule=rule_judge("^[A-Za-z]")),
    "digits": Task("graded, 3 thresholds", ["generator.max_tokens=16"],
                   rule_judge("[0-9]", "([0-9].*){2}", "([0-9].*){3}")),
    "plain-ascii": Task("whole answer", rule=rule_judge("^[ -~]*$")),
    "ascii-prefix": Task("graded, long answers", ["generator.max_tokens=40"],
                         rule_judge("^[ -~]{16}", "^[ -~]{32}", "^[ -~]{64}")),
    "judge-pairwise": Task("LLM judge, pairwise", ["rubric.mode=pairwise",
                                                    "generator.samples_per_prompt=4"]),
    "judge-pointwise": Task("LLM judge, pointwise (the default run)"),
}
# Settings measured against the defaults (each arm: the defaults and its overrides).
ARMS = {
    "defaults": [],
    "shuffled": ["trainer.shuffle=true"],
    "fixed order": ["trainer.shuffle=false"],
    "grpo": ["trainer.advantage_estimator=grpo"],
    "rloo": ["trainer.advantage_estimator=rloo"],
    "shared critic": ["trainer.critic=shared"],
    "actor_lr 2e-3": ["trainer.actor_lr=2e-3"],
    "actor_lr 4e-3": ["trainer.actor_lr=4e-3"],
    "actor_lr 8e-3": ["trainer.actor_lr=8e-3"],
    "ppo_epochs 2": ["trainer.ppo_epochs=2"],
    "ppo_epochs 8": ["trainer.ppo_epochs=8"],
    "mini_batch 32": ["trainer.mini_batch_size=32"],
    "clip 0.1": ["trainer.clip_eps=0.1"],
    "clip 0.2": ["trainer.clip_eps=0.2"],
    "clip 0.3": ["trainer.clip_eps=0.3"],
    "kl_coef 0": ["trainer.kl_coef=0.0"],
    "kl_coef 0.05": ["trainer.kl_coef=0.05"],
    "lora 8": ["trainer.lora.rank=8"],
    "lora 32": ["trainer.lora.rank=32"],
    "lora 8, attention + MLP": ["trainer.lora.rank=8",
                                # the schema's targets (default.yaml adds lm_head)
                                f"trainer.lora.target_modules=[{','.join(ATTENTION_MLP)}]"],
}


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def run_rlaif(task: Task, overrides: list[str], run_dir: Path, seed: int,
              iterations: int) -> dict[str, Any]:
    """One `rlaif-ray run` (or the finished one in `run_dir`): per-iteration score and wall
    seconds from the command's start to each iteration's end."""
    timing = run_dir / "bench-timing.json"
    if not timing.is_file():
        cmd = [sys.executable, "-m", "rlaif_ray.cli", "run", str(default_config_path()),
               f"run.dir={run_dir}", f"run.seed={seed}", f"run.iterations={iterations}",
               "ray.dashboard=false", *task.all_overrides, *overrides]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        timing.write_text(json.dumps({"command_s": time.perf_counter() - start}))
    command_s = json.loads(timing.read_text())["command_s"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    shutdown_s = json.loads((run_dir / "summary.json").read_text())["startup"]["shutdown_s"]
    seconds = [r["iteration_s"] for r in rows]
    wall = [command_s - shutdown_s - sum(seconds[k + 1:]) for k in range(len(rows))]
    score = ([r["reward_mean"] for r in rows] if task.rule else
             [_true_score(run_dir, r["iteration"]) for r in rows])
    return {"score": score, "wall_s": wall, "startup_s": wall[0] - seconds[0]}


def _true_score(run_dir: Path, iteration: int) -> float:
    from bench.experiments import mean_true_score

    answers = read_parts(table_dir(run_dir, "candidates", iteration))
    return mean_true_score([a["response"] for a in answers])


def run_trl(name: str, out: Path, seed: int, iterations: int) -> dict[str, Any]:
    """One TRL GRPOTrainer run of rule task `name` (or the finished one at `out`)."""
    if not out.is_file():
        cmd = [sys.executable, "-m", "bench.learning", "--trl-run", str(out),
               "--trl-task", name, "--trl-seed", str(seed), "--iterations", str(iterations)]
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"TRL run failed:\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
        out.write_text(json.dumps({**result, "started_t": start}))
    result = json.loads(out.read_text())
    wall = [t - result["started_t"] for t in result["iteration_end_t"]]
    return {"score": result["rewards"], "wall_s": wall,
            "startup_s": wall[0] - result["iteration_s"][0]}


def trl_work(task: Task, iterations: int):
    """TRL's side of `task` with the shipped defaults' work and optimizer settings."""
    from bench.peer_trl import Optim, Work

    cfg = load_config(default_config_path(), task.all_overrides)
    gen, tr = cfg.generator, cfg.trainer
    if tr.mini_batch_size not in (None, tr.micro_batch_size) or tr.workers != 1:
        raise ValueError("TRL's side takes one optimizer step per micro batch on one worker")
    work = Work(gen.model, cfg.prompts.limit, gen.samples_per_prompt, gen.max_tokens,
                iterations)
    return work, Optim(tr.actor_lr, tr.kl_coef, tr.ppo_epochs, tr.micro_batch_size,
                       tr.clip_eps)


def final(score: list[float]) -> float:
    """A run's final score: the mean of its last two iterations."""
    return statistics.fmean(score[-2:])


def to_target(run: dict[str, Any], target: float) -> tuple[int | None, float | None]:
    """(iterations, wall seconds from the command's start) until the run's score first
    reached `target`."""
    for k, value in enumerate(run["score"]):
        if value >= target:
            return k + 1, run["wall_s"][k]
    return None, None


def _median_reached(values: list[float | None]) -> float | None:
    """The median over seeds, a seed that never reached the target counting as infinite
    (None when most never did)."""
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    middle = ordered[(len(ordered) - 1) // 2:len(ordered) // 2 + 1]
    known = [v for v in middle if v is not None]
    if len(known) < len(middle):
        return None
    return statistics.fmean(known)


def summarize(arms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per arm over seeds: curve, final score, gain, and iterations / seconds to target."""
    finals = {arm: statistics.median(final(r["score"]) for r in runs)
              for arm, runs in arms.items()}
    target = TARGET_SHARE * max(finals.values())
    out: dict[str, Any] = {"target": target, "arms": {}}
    for arm, runs in arms.items():
        reached = [to_target(r, target) for r in runs]
        training = [None if s is None else s - r["startup_s"]
                    for r, (_, s) in zip(runs, reached, strict=True)]
        curve = list(zip(*(r["score"] for r in runs), strict=True))
        out["arms"][arm] = {
            "curve": [spread(list(values)) for values in curve],
            "final": spread([final(r["score"]) for r in runs]),
            "gain": spread([final(r["score"]) - r["score"][0] for r in runs]),
            "iterations_to_target": [k for k, _ in reached],
            "seconds_to_target": [s for _, s in reached],
            "median_iterations_to_target": _median_reached([k for k, _ in reached]),
            "median_seconds_to_target": _median_reached([s for _, s in reached]),
            # The same less each run's start-up: what a long run's time to target is made of.
            "median_training_seconds_to_target": _median_reached(training),
            "startup_s": spread([r["startup_s"] for r in runs]),
        }
    return out


def plot(name: str, task: Task, arms: dict[str, list[dict[str, Any]]], target: float,
         prefix: str = "") -> Path:
    """Each arm's score per iteration: the median over seeds and its min-max band."""
    return plot_curves(PLOTS / f"{prefix}{name}.png",
                       {arm: [r["score"] for r in runs] for arm, runs in arms.items()},
                       f"{name} ({task.shape})", "reward" if task.rule else "true score",
                       target)


def run_task(name: str, arms: list[str], seeds: int, iterations: int, trl: bool,
             work: Path, plot_prefix: str = "") -> dict[str, Any]:
    """Every arm of task `name` (and TRL's side for a rule task) over `seeds` seeds."""
    task = TASKS[name]
    sides = arms + ([TRL] if trl and task.rule else [])
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for seed in range(seeds):
        for side in sides:
            where = work / name / _slug(side) / f"seed{seed}"
            if side == TRL:
                where.mkdir(parents=True, exist_ok=True)
                run = run_trl(name, where / "trl.json", seed, iterations)
            else:
                run = run_rlaif(task, ARMS[side], where, seed, iterations)
            runs[side].append(run)
            print(f"{name} / {side} / seed {seed}: {run['score'][0]:.2f} -> "
                  f"{final(run['score']):.2f} in {run['wall_s'][-1]:.0f} s", flush=True)
    result = summarize(runs)
    return {"shape": task.shape, "overrides": task.all_overrides, "seeds": seeds,
            "iterations": iterations, "score": "reward" if task.rule else "true score",
            "plot": str(plot(name, task, runs, result["target"], plot_prefix).relative_to(
                PLOTS.parents[1])),
            **result, "runs": runs}


def _reached(value: float | None, unit: str) -> str:
    return "not reached" if value is None else f"{value:.0f}{unit}"


def table(results: dict[str, Any]) -> str:
    lines = ["| task | arm | start | final | gain | iterations to target | s to target "
             "| of which training |", "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for arm, s in result["arms"].items():
            cells = [format_spread(s[key]) for key in ("final", "gain")]
            lines.append(f"| {name} | {arm} | {format_spread(s['curve'][0])} | "
                         f"{' | '.join(cells)} | "
                         f"{_reached(s['median_iterations_to_target'], '')} | "
                         f"{_reached(s['median_seconds_to_target'], ' s')} | "
                         f"{_reached(s['median_training_seconds_to_target'], ' s')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench learning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["defaults"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--no-trl", dest="trl", action="store_false",
                        help="leave out TRL's side (it needs the `peer` extra)")
    parser.add_argument("--out", type=Path, default=RESULTS / "learning.json")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the runs here (default: a temporary folder); finished "
                             "runs found there are read, not run again")
    parser.add_argument("--plot-prefix", default="",
                        help="plots go to docs/learning/<prefix><task>.png")
    parser.add_argument("--trl-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trl-task", choices=list(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--trl-seed", type=int, default=0, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.trl_run:  # one TRL run, in a process of its own
        from bench.peer_trl import trl_run

        task = TASKS[ns.trl_task]
        assert task.rule is not None, "TRL runs rule tasks only"
        work, optim = trl_work(task, ns.iterations)
        trl_run(work, "float32", ns.trl_run, task.rule, ns.trl_seed, optim)
        return
    results = json.loads(ns.out.read_text()).get("tasks", {}) if ns.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="rlaif-learning-") as scratch:
        work = ns.work or Path(scratch)
        for name in ns.tasks:
            results[name] = run_task(name, ns.arms, ns.seeds, ns.iterations, ns.trl, work,
                                     ns.plot_prefix)
            ns.out.parent.mkdir(parents=True, exist_ok=True)
            ns.out.write_text(json.dumps({"machine": machine(), "tasks": results}, indent=2))
    print(table({n: results[n] for n in ns.tasks}))


if __name__ == "__main__":
    main()
