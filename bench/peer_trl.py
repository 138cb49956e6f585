"""`python -m bench peer_trl [--runs N]`: rlaif-ray against TRL's GRPOTrainer on the same
work, sides alternating in one invocation (needs the optional `peer` extra:
`pip install -e .[peer]`; offline).

Same work on both sides: the tiny-llama policy, the first 16 built-in prompts x 8 answers,
8 new tokens at temperature 1, a reward of 1 for an answer that starts with a vowel (the
rlaif-ray side judges with that rule only), AdamW at 2e-3, KL coefficient 0.01, and 32
optimizer steps per batch of 128 answers (4 epochs x 8 micro-batches of 16; TRL:
num_iterations 4 x steps_per_generation 8), 8 iterations. Reported: seconds per steady
iteration (median of iterations 1-7, each side's own clock), whole-command seconds, the mean
reward per iteration, and rlaif-ray's start-up seconds (from its summary.json). Writes
bench/results/peer_trl.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine, summarize

PROMPTS, SAMPLES, TOKENS, ITERATIONS = 16, 8, 8, 8
MICRO_BATCH, EPOCHS, LR, KL = 16, 4, 2e-3, 0.01
VOWEL = r"^\s*[aeiouAEIOU]"
SIDES = ("rlaif-ray gae", "rlaif-ray grpo", "trl grpo")


def _rlaif_command(run_dir: Path, estimator: str) -> list[str]:
    from rlaif_ray.config import default_config_path

    judge = f"judges=[{{name: rules, kind: rule, checks: [{{type: regex, pattern: '{VOWEL}'}}]}}]"
    return [sys.executable, "-m", "rlaif_ray.cli", "run", str(default_config_path()),
            f"run.dir={run_dir}", judge, f"run.iterations={ITERATIONS}",
            f"prompts.limit={PROMPTS}", f"generator.samples_per_prompt={SAMPLES}",
            f"generator.max_tokens={TOKENS}", f"trainer.micro_batch_size={MICRO_BATCH}",
            f"trainer.ppo_epochs={EPOCHS}", f"trainer.actor_lr={LR}", f"trainer.kl_coef={KL}",
            f"trainer.advantage_estimator={estimator}", "ray.dashboard=false"]


def _rlaif_side(estimator: str, work: Path) -> dict[str, Any]:
    run_dir = work / f"rlaif-{estimator}-{time.monotonic_ns()}"
    start = time.perf_counter()
    done = subprocess.run(_rlaif_command(run_dir, estimator), capture_output=True, text=True)
    command_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"rlaif-ray run failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    startup = json.loads((run_dir / "summary.json").read_text())["startup"]
    return {"command_s": command_s, "iteration_s": [r["iteration_s"] for r in rows],
            "rewards": [r["reward_mean"] for r in rows], "startup": startup}


def _trl_side(work: Path) -> dict[str, Any]:
    out = work / f"trl-{time.monotonic_ns()}.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.peer_trl", "--trl-run", str(out)],
                          capture_output=True, text=True)
    command_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"TRL run failed:\n{done.stderr[-3000:]}")
    return {"command_s": command_s, **json.loads(out.read_text())}


def trl_run(out: Path) -> None:
    """One TRL GRPOTrainer run of the same work; writes per-iteration seconds and rewards."""
    import re

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlaif_ray.data.prompts import load_prompts
    from rlaif_ray.models import build_model

    model_dir = str(build_model("tiny-llama"))
    prompts = [p.prompt for p in load_prompts(None, PROMPTS)]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]}
                                 for p in prompts])
    rewards: list[float] = []

    def vowel_start(completions, **_: Any) -> list[float]:
        scores = [float(re.match(VOWEL, c[0]["content"]) is not None) for c in completions]
        rewards.append(statistics.fmean(scores))
        return scores

    steps_per_iteration = EPOCHS * PROMPTS * SAMPLES // MICRO_BATCH
    marks: list[float] = []

    class IterationClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_iteration == 0:
                marks.append(time.perf_counter())

    config = GRPOConfig(
        output_dir=str(out.parent / "trl-output"), use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=steps_per_iteration, seed=0,
        per_device_train_batch_size=MICRO_BATCH, num_generations=SAMPLES,
        steps_per_generation=PROMPTS * SAMPLES // MICRO_BATCH, num_iterations=EPOCHS,
        max_completion_length=TOKENS, temperature=1.0, learning_rate=LR, beta=KL,
        max_steps=steps_per_iteration * ITERATIONS, lr_scheduler_type="constant",
        warmup_steps=0, optim="adamw_torch", bf16=False)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                          reward_funcs=vowel_start, args=config, train_dataset=dataset,
                          callbacks=[IterationClock()])
    start = time.perf_counter()
    trainer.train()
    edges = [start, *marks]
    out.write_text(json.dumps({"iteration_s": [b - a for a, b in zip(edges, edges[1:],
                                                                          strict=False)],
                               "rewards": rewards}))


def _steady(series: list[float]) -> float:
    return statistics.median(series[1:])


def run(runs: int = 2) -> dict[str, Any]:
    """All sides `runs` times, alternating; medians and ratios against TRL."""
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="rlaif-peer-") as scratch:
        work = Path(scratch)
        for _ in range(runs):
            results["rlaif-ray gae"].append(_rlaif_side("gae", work))
            results["rlaif-ray grpo"].append(_rlaif_side("grpo", work))
            results["trl grpo"].append(_trl_side(work))
    sides = {side: {"steady_iteration_s": summarize([_steady(r["iteration_s"]) for r in rs]),
                    "command_s": summarize([r["command_s"] for r in rs]),
                    "rewards": [r["rewards"] for r in rs],
                    **({"startup_s": {key: summarize([r["startup"][key] for r in rs])
                                      for key in rs[0]["startup"]}}
                       if "startup" in rs[0] else {})}
             for side, rs in results.items()}
    trl = sides["trl grpo"]
    ratios = {side: {"steady_iteration": s["steady_iteration_s"]["median"]
                     / trl["steady_iteration_s"]["median"],
                     "command": s["command_s"]["median"] / trl["command_s"]["median"]}
              for side, s in sides.items() if side != "trl grpo"}
    grpo = ratios["rlaif-ray grpo"]
    return {"ratio": grpo["steady_iteration"], "goal": "grpo <= 0.7x TRL per steady iteration",
            "detail": "; ".join(f"{side}: {r['steady_iteration']:.2f}x per iteration, "
                                f"{r['command']:.2f}x command" for side, r in ratios.items()),
            "sides": sides, "ratios": ratios,
            "work": {"prompts": PROMPTS, "samples": SAMPLES, "tokens": TOKENS,
                     "iterations": ITERATIONS, "optimizer_steps_per_iteration":
                     EPOCHS * PROMPTS * SAMPLES // MICRO_BATCH, "lr": LR, "kl": KL}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench peer_trl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--trl-run", type=Path, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.trl_run:
        trl_run(ns.trl_run)
        return
    result = run(ns.runs)
    path = RESULTS / "peer_trl.json"
    path.write_text(json.dumps({"case": "peer_trl", "machine": machine(), **result}, indent=2))
    print(f"peer_trl: wrote {path}\n{result['detail']}")


if __name__ == "__main__":
    main()
