"""`python -m bench background [--runs N]`: what the processes beside the trainer cost the
`100m` grpo update (the peer bench's work, bench/peer_trl.py), in one invocation:

1. `run`: a real `rlaif-ray run` of that work, 8 iterations. Every process's CPU time is
   sampled each 0.25 s; over the intervals in which the trainer's worker is busy (>= 1.5 of
   the 2 cores), the CPU every other process took, by process.
2. `update`: the same PPO update in this process (DeepSpeed engines, the run's trainer
   config, a batch of the work's shape), alternating quiet and beside a load process that
   burns a sixth of one core in 1 ms bursts; the update's wall increase per CPU-second the
   load took while it ran.

The ratio is that increase per CPU-second: 1 means each second of CPU another process
takes during the update delays it by a whole second (the two OpenMP threads meet at a
barrier after every operator, so a thread that loses its core stalls the other), 0.5 would
be a fair share. With the run's background CPU per update, it projects the update without
it. Writes bench/results/background.json. Diagnostic: no goal."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import init_single_rank, summarize
from bench.peer_trl import CASES, Work, _rlaif_command
from rlaif_ray.train.samples import TrainingSample

TRAINER = "ray::RayTrainWorker"
BUSY_CORES = 1.5  # of the trainer's two torch threads
SAMPLE_S = 0.25
RUN_ITERATIONS = 8
RUN_TIMEOUT_S = 900
# The load: busy BURST_S out of every PERIOD_S (a sixth of one core, about the share the
# run's other processes take of the two while the trainer is busy).
BURST_S, PERIOD_S = 0.001, 0.006
LOAD = ("import time\nwhile True:\n    t = time.perf_counter()\n"
        "    while time.perf_counter() - t < {burst}: pass\n    time.sleep({rest})\n")
PROMPT_TOKENS = 23


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[int, float]:
    """CPU seconds of every process now."""
    seconds = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (value := cpu_seconds(int(entry))) is not None:
            seconds[int(entry)] = value
    return seconds


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


def process_name(command: str) -> str:
    """A short name for a process from its command line: a Ray worker's title, a Python
    process's script or module, else the executable's name."""
    words = command.split()
    if not words or words[0].startswith("ray::"):
        return words[0] if words else "?"
    if not Path(words[0]).name.startswith("python"):
        return Path(words[0]).name
    args = iter(words[1:])
    for word in args:
        if word == "-m":
            return next(args, "python")
        if not word.startswith("-"):
            return Path(word).name
    return "python"


def busy_share(samples: list[tuple[float, dict[int, float]]], trainer: int, exclude: set[int],
               busy_cores: float = BUSY_CORES) -> tuple[float, dict[int, float]]:
    """Over the sampling intervals in which `trainer` used at least `busy_cores`: their
    seconds, and the CPU seconds each other process (but `exclude`) took in them."""
    busy_s, others = 0.0, defaultdict[int, float](float)
    for (t0, before), (t1, after) in zip(samples, samples[1:], strict=False):
        if trainer not in before or trainer not in after:
            continue
        if (after[trainer] - before[trainer]) / (t1 - t0) < busy_cores:
            continue
        busy_s += t1 - t0
        for pid, seconds in after.items():
            if pid != trainer and pid not in exclude and pid in before:
                others[pid] += seconds - before[pid]
    return busy_s, others


def _sample_until(done: threading.Event, out: list[tuple[float, dict[int, float]]]) -> None:
    while not done.wait(SAMPLE_S):
        out.append((time.monotonic(), process_cpu()))


def measure_run(work: Work, scratch: Path) -> dict[str, Any]:
    """One real run of `work` with grpo; the other processes' CPU while the trainer is busy."""
    command = _rlaif_command(scratch / "run", "rlaif-ray grpo", work, "float32") + [
        f"run.iterations={RUN_ITERATIONS}", f"trainer.checkpoint_every={RUN_ITERATIONS}"]
    samples: list[tuple[float, dict[int, float]]] = []
    done = threading.Event()
    sampler = threading.Thread(target=_sample_until, args=(done, samples), daemon=True)
    log = scratch / "run.log"  # a file, not a pipe: a full pipe would stall the run
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    sampler.start()
    trainer: int | None = None
    names: dict[int, str] = {}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the run took over {RUN_TIMEOUT_S} s")
            # Named while they live (an actor renames itself; a process that exits
            # reads empty and keeps its last name).
            names |= {int(entry): line for entry in os.listdir("/proc")
                      if entry.isdigit() and (line := command_line(int(entry)))}
            trainer = trainer or next(
                (pid for pid, line in names.items() if line.startswith(TRAINER)), None)
            time.sleep(1.0)
    finally:
        done.set()
        sampler.join()
    if process.returncode != 0 or trainer is None:
        raise RuntimeError(f"the run failed (exit {process.returncode}):\n"
                           f"{log.read_text()[-3000:]}")
    busy_s, others = busy_share(samples, trainer, {os.getpid()})
    by_name = defaultdict[str, float](float)
    for pid, seconds in others.items():
        by_name[process_name(names.get(pid, ""))] += seconds
    total = sum(others.values())
    return {"trainer_busy_s": busy_s, "others_cpu_s": total,
            "others_share_of_cpus": total / busy_s / (os.cpu_count() or 1),
            "others_cpu_s_per_busy_s": total / busy_s,
            "by_process": {name: round(s, 3) for name, s in
                           sorted(by_name.items(), key=lambda item: -item[1])[:20]}}


def _batch(work: Work, vocab: int) -> list[TrainingSample]:
    """The work's batch shape: `work.prompts` prompts x `work.samples` answers of
    `work.tokens` tokens, random tokens and 0/1 rewards."""
    rng = random.Random(0)
    prompts = [[rng.randrange(4, vocab) for _ in range(PROMPT_TOKENS)]
               for _ in range(work.prompts)]
    return [TrainingSample(
        response_id=f"r{p}-{a}", prompt_id=f"p{p}", prompt_token_ids=prompt,
        response_token_ids=[rng.randrange(4, vocab) for _ in range(work.tokens)],
        logprobs=[-7.0] * work.tokens, reward=float(rng.random() < 0.3), confidence=1.0,
        policy_version=1) for p, prompt in enumerate(prompts) for a in range(work.samples)]


def measure_update(work: Work, runs: int, scratch: Path) -> dict[str, Any]:
    """The PPO update quiet and beside the load, alternating `runs` times each."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlaif_ray.config import load_config
    from rlaif_ray.models import resolve_model
    from rlaif_ray.train.deepspeed_engines import frozen, initialize, load_kwargs
    from rlaif_ray.train.ppo_update import ppo_iteration
    from rlaif_ray.train.settings import settings_of
    from rlaif_ray.train.worker import torch_threads

    command = _rlaif_command(scratch / "unused", "rlaif-ray grpo", work, "float32")
    cfg = load_config(command[4], command[5:])
    tr = settings_of(cfg.trainer)
    torch.set_num_threads(torch_threads(tr))
    init_single_rank(29537)
    path = resolve_model(work.model, cfg.cache_dir)
    torch.manual_seed(0)
    actor = initialize(AutoModelForCausalLM.from_pretrained(path, **load_kwargs(tr)), tr,
                       tr.actor_lr, 1)
    ref = frozen(AutoModelForCausalLM.from_pretrained(path, **load_kwargs(tr)), tr, 1)
    batch = _batch(work, actor.module.config.vocab_size)

    def update() -> float:
        start = time.perf_counter()
        ppo_iteration(actor, None, ref, batch, tr, 0, 1, torch.device("cpu"), 0, 1.0, 1, 0)
        return time.perf_counter() - start

    update()  # warm-up
    quiet, loaded, load_cpu = [], [], []
    source = LOAD.format(burst=BURST_S, rest=PERIOD_S - BURST_S)
    for _ in range(runs):
        quiet.append(update())
        load = subprocess.Popen([sys.executable, "-c", source])
        try:
            deadline = time.monotonic() + 30
            while not cpu_seconds(load.pid):  # started and burning
                if load.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the load process did not start burning")
                time.sleep(0.05)
            before = cpu_seconds(load.pid) or 0.0
            loaded.append(update())
            load_cpu.append((cpu_seconds(load.pid) or before) - before)
        finally:
            load.kill()
            load.wait()
    increase = statistics.median(loaded) - statistics.median(quiet)
    return {"quiet_s": summarize(quiet), "loaded_s": summarize(loaded),
            "load_cpu_s": summarize(load_cpu),
            "increase_per_load_cpu_s": increase / statistics.median(load_cpu)}


def run(runs: int = 3) -> dict[str, Any]:
    """Both measurements on the `100m` work; `runs` quiet and loaded updates each."""
    work = CASES["100m"]
    with tempfile.TemporaryDirectory(prefix="rlaif-background-") as tmp:
        in_run = measure_run(work, Path(tmp))
        update = measure_update(work, runs, Path(tmp))
    per_s = update["increase_per_load_cpu_s"]
    quiet = update["quiet_s"]["median"]
    # The run's update, projected: the quiet update plus its share of the background.
    with_background = quiet / (1 - per_s * in_run["others_cpu_s_per_busy_s"])
    detail = (f"while the trainer is busy, the other processes take "
              f"{in_run['others_share_of_cpus']:.1%} of the {os.cpu_count()} cores; each "
              f"CPU-second of load delays the update by {per_s:.2f} s; quiet update {quiet:.2f} s, "
              f"projected with the run's background {with_background:.2f} s")
    return {"unit": "s of update per s of other CPU", "ratio": per_s,
            "goal": "diagnostic (none)", "detail": detail, "run": in_run, "update": update,
            "projected_update_with_background_s": with_background}
