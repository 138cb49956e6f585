"""`python -m bench peer_trl [--case tiny|100m] [--runs N] [--dtype float32|bfloat16]`:
rlaif-ray against TRL's GRPOTrainer on the same work, sides alternating in one invocation
(needs the optional `peer` extra: `pip install -e .[peer]`; offline).

Sides: rlaif-ray tuned for the comparison (below) with `gae` (its separate critic), `gae`
with `trainer.critic=shared` (the value head on the policy's trunk), and `grpo`; rlaif-ray
`defaults` (gae, as shipped: what a user gets); TRL's GRPOTrainer.

Same work on every side: the case's policy (`tiny`: tiny-llama, the first 16 built-in prompts
x 8 answers of 8 new tokens, 8 iterations; `100m`: bench-llama-100m, 2 prompts x 8 answers
of 32 tokens, 5 iterations) at temperature 1, a reward of 1 for an answer that starts with a
vowel (the rlaif-ray side judges with that rule only), AdamW at 2e-3, KL coefficient 0.01,
PPO clip 0.2 (TRL's epsilon), micro-batches of 16 and 4 epochs per batch (TRL:
num_iterations 4, steps_per_generation = batch / 16): the same optimizer steps. The tuned
sides (`TUNED`) generate with two torch threads as TRL does (`generator.torch_threads=2`),
run no dashboard, and checkpoint only at their last iteration (TRL saves nothing;
`trainer.checkpoint_every` = iterations); the `defaults` side checkpoints every iteration,
with the dashboard and vLLM's one thread.

Both sides run in float32 unless `--dtype bfloat16` (case `peer_trl_100m_bf16`): then each
in its own bf16 mode, generation included (rlaif-ray `trainer.dtype` and `generator.dtype`
bfloat16, TRL `bf16=True`, which autocasts its generation too).

Reported: seconds per steady iteration (median of the iterations but the first and the
last, each side's own clock), whole-command seconds, their ratios to TRL's round by round
(a round runs every side back to back, so its ratio cancels the machine's drift between
rounds; the headline is the median of those paired ratios), the mean reward per
iteration, and rlaif-ray's start-up seconds (from its summary.json). Writes
bench/results/peer_trl.json (`tiny`), peer_trl_100m.json or peer_trl_100m_bf16.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine, summarize

MICRO_BATCH, EPOCHS, LR, KL, CLIP = 16, 4, 2e-3, 0.01, 0.2
VOWEL = r"^\s*[aeiouAEIOU]"
VOWEL_JUDGE = f"judges=[{{name: rules, kind: rule, checks: [{{type: regex, pattern: '{VOWEL}'}}]}}]"
# rlaif-ray's sides: (trainer.advantage_estimator, trainer.critic, tuned: see TUNED).
RLAIF_SIDES = {"rlaif-ray gae": ("gae", "separate", True),
               "rlaif-ray gae shared": ("gae", "shared", True),
               "rlaif-ray grpo": ("grpo", "separate", True),
               "rlaif-ray defaults": ("gae", "separate", False)}
SIDES = (*RLAIF_SIDES, "trl grpo")
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Work:
    """What both sides run."""

    model: str
    prompts: int
    samples: int
    tokens: int
    iterations: int



CASES = {"tiny": Work("tiny-llama", 16, 8, 8, 8),
         "100m": Work("bench-llama-100m", 2, 8, 32, 5)}


# The tuned sides' settings beyond the work: no checkpoint before the last iteration (TRL
# saves nothing), no dashboard, and, as TRL's generation does, the engine on both cores
# while the trainer idles (sync mode: the 100M model's generation 1.9 s -> 1.2 s; tiny
# unchanged). The side `rlaif-ray defaults` runs without them: what a user gets.
TUNED = ["ray.dashboard=false", "generator.torch_threads=2"]


def _rlaif_command(run_dir: Path, side: str, work: Work, dtype: str) -> list[str]:
    from rlaif_ray.config import default_config_path

    estimator, critic, tuned = RLAIF_SIDES[side]
    return [sys.executable, "-m", "rlaif_ray.cli", "run", str(default_config_path()),
            f"run.dir={run_dir}", VOWEL_JUDGE, f"run.iterations={work.iterations}",
            f"generator.model={work.model}",
            f"prompts.limit={work.prompts}", f"generator.samples_per_prompt={work.samples}",
            f"generator.max_tokens={work.tokens}", f"trainer.micro_batch_size={MICRO_BATCH}",
            f"trainer.ppo_epochs={EPOCHS}", f"trainer.actor_lr={LR}", f"trainer.kl_coef={KL}",
            f"trainer.clip_eps={CLIP}",
            f"trainer.advantage_estimator={estimator}", f"trainer.critic={critic}",
            f"trainer.dtype={dtype}", f"generator.dtype={dtype}",
            *([f"trainer.checkpoint_every={work.iterations}", *TUNED] if tuned else [])]


def _rlaif_side(side: str, work: Work, dtype: str, scratch: Path) -> dict[str, Any]:
    run_dir = scratch / f"rlaif-{side.replace(' ', '-')}-{time.monotonic_ns()}"
    start = time.perf_counter()
    done = subprocess.run(_rlaif_command(run_dir, side, work, dtype),
                          capture_output=True, text=True)
    command_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"rlaif-ray run failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    startup = json.loads((run_dir / "summary.json").read_text())["startup"]
    # A `100m` run leaves 1.2 GB (its final checkpoint, optimizer states included, and the
    # exported policy): kept to the end, 3 rounds of 3 sides filled this machine's disk.
    shutil.rmtree(run_dir)
    return {"command_s": command_s, "iteration_s": [r["iteration_s"] for r in rows],
            "rewards": [r["reward_mean"] for r in rows], "startup": startup}


def _trl_side(case: str, dtype: str, scratch: Path) -> dict[str, Any]:
    out = scratch / f"trl-{time.monotonic_ns()}.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.peer_trl", "--case", case,
                           "--dtype", dtype, "--trl-run", str(out)], capture_output=True,
                          text=True)
    command_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"TRL run failed:\n{done.stderr[-3000:]}")
    return {"command_s": command_s, **json.loads(out.read_text())}


@dataclass(frozen=True)
class Optim:
    """The optimizer settings both sides share (defaults: this bench's)."""

    lr: float = LR
    kl: float = KL
    epochs: int = EPOCHS
    micro_batch: int = MICRO_BATCH
    clip: float = CLIP  # PPO's clip range (TRL's epsilon)

    def steps_per_iteration(self, work: Work) -> int:
        """Optimizer steps per iteration of `work`: one per micro batch, every epoch."""
        return self.epochs * work.prompts * work.samples // self.micro_batch


def rule_reward(judge: str):
    """The score `rlaif-ray`'s rule judge `judge` (a `judges=[...]` override holding one
    rule judge) gives a text: the same checks, the same code."""
    from rlaif_ray.config import default_config_path, load_config
    from rlaif_ray.judge.rules import rule_score

    [rules] = load_config(default_config_path(), [judge]).judges
    return lambda text: rule_score(rules.checks, text)


def trl_run(work: Work, dtype: str, out: Path, judge: str = VOWEL_JUDGE, seed: int = 0,
            optim: Optim = Optim()) -> None:
    """One TRL GRPOTrainer run of the same work, rewarded by rule judge `judge`; writes
    per-iteration seconds, rewards and wall-clock ends (`time.time()`). `dtype` bfloat16 is
    TRL's (the HF Trainer's) `bf16=True`: autocast over fp32 weights."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlaif_ray.data.prompts import load_prompts
    from rlaif_ray.models import build_model

    model_dir = str(build_model(work.model))
    prompts = [p.prompt for p in load_prompts(None, work.prompts)]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]}
                                 for p in prompts])
    score = rule_reward(judge)
    rewards: list[float] = []

    def judged(completions, **_: Any) -> list[float]:
        scores = [score(c[0]["content"]) for c in completions]
        rewards.append(statistics.fmean(scores))
        return scores

    steps_per_iteration = optim.steps_per_iteration(work)
    marks: list[float] = []
    ends: list[float] = []

    class IterationClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_iteration == 0:
                marks.append(time.perf_counter())
                ends.append(time.time())

    config = GRPOConfig(
        output_dir=str(out.parent / "trl-output"), use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=steps_per_iteration, seed=seed,
        per_device_train_batch_size=optim.micro_batch, num_generations=work.samples,
        steps_per_generation=work.prompts * work.samples // optim.micro_batch,
        num_iterations=optim.epochs, max_completion_length=work.tokens, temperature=1.0,
        learning_rate=optim.lr, beta=optim.kl, epsilon=optim.clip,
        max_steps=steps_per_iteration * work.iterations,
        lr_scheduler_type="constant",
        warmup_steps=0, optim="adamw_torch", bf16=dtype == "bfloat16")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                          reward_funcs=judged, args=config, train_dataset=dataset,
                          callbacks=[IterationClock()])
    start = time.perf_counter()
    trainer.train()
    edges = [start, *marks]
    out.write_text(json.dumps({"iteration_s": [b - a for a, b in zip(edges, edges[1:],
                                                                          strict=False)],
                               "rewards": rewards, "iteration_end_t": ends}))


def steady_seconds(series: list[float]) -> float:
    """Seconds per steady iteration: the median of all but the first (start-up) and the
    last, which carries the end of a run (rlaif-ray's final checkpoint and policy export,
    2.7 s for the 100M case; TRL saves nothing)."""
    return statistics.median(series[1:-1])


def _paired(side: list[float], trl: list[float]) -> dict[str, Any]:
    """Round-by-round ratios of a side's seconds to TRL's, summarized."""
    return summarize([a / b for a, b in zip(side, trl, strict=True)])


def run(case: str = "tiny", runs: int = 2, dtype: str = "float32") -> dict[str, Any]:
    """All sides of `case` `runs` times, alternating; medians and ratios against TRL; each
    side trains in `dtype` (its own bfloat16 mode: see `trl_run`)."""
    work = CASES[case]
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="rlaif-peer-") as tmp:
        scratch = Path(tmp)
        for _ in range(runs):
            for side in RLAIF_SIDES:
                results[side].append(_rlaif_side(side, work, dtype, scratch))
            results["trl grpo"].append(_trl_side(case, dtype, scratch))
    sides: dict[str, dict[str, Any]]
    sides = {side: {"steady_iteration_s": summarize([steady_seconds(r["iteration_s"]) for r in rs]),
                    "command_s": summarize([r["command_s"] for r in rs]),
                    "rewards": [r["rewards"] for r in rs],
                    **({"startup_s": {key: summarize([r["startup"][key] for r in rs])
                                      for key in rs[0]["startup"]}}
                       if "startup" in rs[0] else {})}
             for side, rs in results.items()}
    # Each round runs every side back to back, so a round's ratio cancels the machine's
    # drift between rounds; the headline is the median of those paired ratios.
    steady = {side: sides[side]["steady_iteration_s"]["runs"] for side in SIDES}
    command = {side: sides[side]["command_s"]["runs"] for side in SIDES}
    ratios = {side: {"steady_iteration": _paired(steady[side], steady["trl grpo"]),
                     "command": _paired(command[side], command["trl grpo"])}
              for side in SIDES if side != "trl grpo"}
    grpo = ratios["rlaif-ray grpo"]
    return {"ratio": grpo["steady_iteration"]["median"],
            "goal": "grpo <= 0.7x TRL per steady iteration (median of paired rounds)",
            "detail": "; ".join(f"{side}: {r['steady_iteration']['median']:.2f}x per "
                                f"iteration, {r['command']['median']:.2f}x command"
                                for side, r in ratios.items()),
            "sides": sides, "ratios": ratios,
            "work": {**asdict(work), "optimizer_steps_per_iteration":
                     Optim().steps_per_iteration(work), "lr": LR, "kl": KL, "clip": CLIP,
                     "dtype": dtype}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench peer_trl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="tiny")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="both sides' dtype: rlaif-ray trainer.dtype and "
                        "generator.dtype, TRL bf16")
    parser.add_argument("--trl-run", type=Path, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.trl_run:
        trl_run(CASES[ns.case], ns.dtype, ns.trl_run)
        return
    result = run(ns.case, ns.runs, ns.dtype)
    name = "peer_trl" + ("" if ns.case == "tiny" else f"_{ns.case}") + (
        "" if ns.dtype == "float32" else "_bf16")
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"case": name, "machine": machine(), **result}, indent=2))
    print(f"peer_trl: wrote {path}\n{result['detail']}")


if __name__ == "__main__":
    main()
