"""scale: the rollout (generate -> judge -> vote -> Parquet) on a simulated cluster as
replicas, judge batch size and iterations grow.

The cluster is `ray.cluster_utils.Cluster` on this machine: a head (the driver's node),
generator nodes and judge nodes, each pool pinned to its node type by a custom resource as
on a GPU cluster. Generators are tiny vLLM engines; judges are `http` judges in front of a
simulated hosted judge API in a process of its own (bench/judge_api.py: 0.2-2 s a reply,
5% HTTP 429s), so a judge replica's throughput is set by the API's latency, as with a
hosted judge, not by this machine's two cores.

Sweeps, each point a fresh judge pool over `ITERATIONS` iterations (medians reported):
- judges: http judge replicas 1 -> 32 on one generator, items per iteration growing with
  the replicas (each replica has the same work): verdicts/s, the driver's CPU share and
  memory, queue depths and judge utilisation (the API's busy seconds over what the
  replicas' request threads could serve);
- generators: tiny engines 1 -> 8 with a rule judge (judging costs nothing): verdicts/s,
  i.e. the generation ceiling;
- batch size: `judges[].batch_size` at 8 replicas;
- memory: the driver's resident memory after each of the 32-judge point's iterations;
- the stream's bound fixed at 4 batches (what it was before it followed the judge pools)
  at 32 judges.

The headline ratio is the scaling efficiency at 32 judges: verdicts/s over 32 times those
of one judge (1.0: linear). Goals (issue #39): linear until generation is the bottleneck;
the driver's CPU share at most 2% at 32 judges; its memory flat over iterations."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JUDGE_REPLICAS = (1, 2, 4, 8, 16, 32)
GENERATOR_REPLICAS = (1, 2, 4, 8)
BATCH_SIZES = (4, 16, 64)
ITERATIONS = 3
BATCH_ITERATIONS = 2
MEMORY_ITERATIONS = 6  # at the most judges: that point's iterations
# Answers to judge per iteration and judge replica: two 16-item requests, one in each of a
# replica's request slots (`judges[].max_inflight_per_replica`).
ITEMS_PER_JUDGE = 32
ITEMS_PER_GENERATOR = 512  # answers per iteration and generator replica (rule judge)
FIXED_BOUND = 4  # the stream's bound before it followed the judge pools
SAMPLES_PER_PROMPT = 4
LATENCY_S = (0.2, 2.0)
RATE_LIMITED = 0.05
GENERATOR_NODES, GENERATORS_PER_NODE = 2, 4
JUDGE_NODES, JUDGES_PER_NODE = 4, 8


@contextlib.contextmanager
def simulated_cluster() -> Iterator[str]:
    """A head plus generator and judge nodes (fake nodes on this machine); this process
    joins it as the driver. Yields the cluster's address."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        for _ in range(GENERATOR_NODES):
            cluster.add_node(num_cpus=GENERATORS_PER_NODE,
                             resources={"generator_node": GENERATORS_PER_NODE})
        for _ in range(JUDGE_NODES):
            cluster.add_node(num_cpus=JUDGES_PER_NODE, resources={"judge_node": JUDGES_PER_NODE})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="bench-scale", log_to_driver=False)
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


@contextlib.contextmanager
def judge_api(latency_s: tuple[float, float] = LATENCY_S,
              rate_limited: float = RATE_LIMITED) -> Iterator[str]:
    """The simulated judge API in a process of its own (its threads are not the driver's
    CPU); yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.judge_api", "--latency",
                             str(latency_s[0]), str(latency_s[1]), "--rate-limited",
                             str(rate_limited)], stdout=subprocess.PIPE, text=True)
    try:
        url = (proc.stdout.readline() if proc.stdout else "").strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the simulated judge API did not start (exit {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def api_stats(url: str) -> dict[str, Any]:
    """The simulated API's counters (requests, limited, busy_s, max_in_flight)."""
    import requests

    return requests.get(f"{url}/stats", timeout=10).json()


def bench_config(run_dir: str, cache: str | None, generators: int, judges: int,
                 url: str | None, batch_size: int = 16, *overrides: str):
    """The default config on the simulated cluster: `generators` tiny engines, and
    `judges` http replicas in front of `url` (None: the rule judge alone)."""
    from rlaif_ray.config import load_config

    judge = ("judges=[{name: rules, kind: rule, checks: [{type: min_words, value: 1}]}]"
             if url is None else
             f"judges=[{{name: api, kind: http, base_url: '{url}', model: simulated, "
             f"replicas: {judges}, batch_size: {batch_size}, backoff_s: 0.2, "
             f"resources: {{num_cpus: 1, custom: {{judge_node: 1}}}}}}]")
    return load_config("conf/default.yaml", [
        f"run.dir={run_dir}", judge, f"generator.replicas={generators}",
        "generator.resources={num_cpus: 1, custom: {generator_node: 1}}",
        f"generator.samples_per_prompt={SAMPLES_PER_PROMPT}", "generator.max_tokens=16",
        "run.stall_timeout_s=300", *overrides] + ([f"cache_dir={cache}"] if cache else []))


def prompts_for(items: int) -> list:
    """`items / SAMPLES_PER_PROMPT` prompts, the built-in set repeated under new ids."""
    from rlaif_ray.data.prompts import Prompt, load_prompts

    base = load_prompts()
    count = max(1, items // SAMPLES_PER_PROMPT)
    return [Prompt(f"{base[i % len(base)].prompt_id}-{i}", base[i % len(base)].prompt)
            for i in range(count)]


class DriverMeter:
    """This process's CPU seconds and resident memory (the driver: its Ray threads too)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def rss_mib(self) -> float:
        return self.process.memory_info().rss / 2**20


def one_iteration(cfg, generators, judges, prompts: list, iteration: int, url: str | None,
                  meter: DriverMeter) -> dict[str, Any]:
    """One iteration's rollout, written as Parquet parts under `run.dir`: verdicts/s, the
    driver's CPU share and memory, the deepest queues, and (http judges, at `url`) the
    judges' utilisation."""
    from rlaif_ray.judge.rubric import Rubric
    from rlaif_ray.rollout.stream import RolloutStream, write_batch
    from rlaif_ray.storage import StoragePath

    peaks = {"batches": 0, "requests": 0}

    def on_queue(batches: int, requests: int) -> None:
        peaks["batches"] = max(peaks["batches"], batches)
        peaks["requests"] = max(peaks["requests"], requests)

    before = api_stats(url) if url else None
    stream = RolloutStream(cfg, generators, judges, Rubric.from_config(cfg.rubric), on_queue)
    verdicts = 0
    start, cpu = time.perf_counter(), meter.cpu_s()
    for batch in stream.run(prompts, iteration):
        write_batch(batch, StoragePath.of(cfg.run.dir), iteration)
        verdicts += len(batch.verdicts)
    wall = time.perf_counter() - start
    row = {"verdicts": verdicts, "seconds": wall, "verdicts_per_s": verdicts / wall,
           "driver_cpu_share": (meter.cpu_s() - cpu) / wall, "driver_rss_mib": meter.rss_mib(),
           "max_batches_in_flight": peaks["batches"], "max_requests_waiting": peaks["requests"]}
    if url is not None and before is not None:
        after = api_stats(url)
        threads = sum(len(j.replicas.names) * j.cfg.concurrency for j in judges if j.replicas)
        row["judge_utilisation"] = (after["busy_s"] - before["busy_s"]) / (wall * threads)
        row["api_requests"] = after["requests"] - before["requests"]
        row["api_429s"] = after["limited"] - before["limited"]
    return row


def point(cfg, generators, prompts: list, url: str | None, iterations: int,
          meter: DriverMeter) -> dict[str, Any]:
    """A fresh judge pool for `cfg` over `iterations` iterations in a new `run.dir`: each
    iteration's row and the medians."""
    from rlaif_ray.judge.pools import start_judges

    Path(cfg.run.dir).mkdir()
    judges = start_judges(cfg)
    try:
        rows = [one_iteration(cfg, generators, judges, prompts, k, url, meter)
                for k in range(iterations)]
    finally:
        for judge in judges:
            judge.shutdown()
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {"iterations": rows, "median": {k: statistics.median(r[k] for r in rows)
                                           for k in keys}}


@contextlib.contextmanager
def started_generators(cfg) -> Iterator[Any]:
    """The generator pool of `cfg`, shut down on the way out."""
    from rlaif_ray.rollout.pool import GeneratorPool

    pool = GeneratorPool.from_config(cfg, cfg.generator.model)
    try:
        yield pool
    finally:
        pool.shutdown()


def judge_sweep(cache: str | None, url: str, meter: DriverMeter,
                replicas: tuple[int, ...] = JUDGE_REPLICAS
                ) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Verdicts/s and the driver's share as http judge replicas grow (one generator), the
    most replicas over `MEMORY_ITERATIONS`; and, at the most, with the stream's bound fixed
    at `FIXED_BOUND` batches, one iteration (what a fixed bound leaves idle)."""
    results = {}
    most = max(replicas)
    with tempfile.TemporaryDirectory() as run_dir, \
            started_generators(bench_config(run_dir, cache, 1, 1, url)) as generators:
        for count in replicas:
            cfg = bench_config(f"{run_dir}/j{count}", cache, 1, count, url)
            iterations = MEMORY_ITERATIONS if count == most else ITERATIONS
            results[count] = point(cfg, generators, prompts_for(ITEMS_PER_JUDGE * count),
                                   url, iterations, meter)
            print(f"  judges {count:>2}: {summary_line(results[count])}", flush=True)
        cfg = bench_config(f"{run_dir}/fixed", cache, 1, most, url, 16,
                           f"stream.max_batches_in_flight={FIXED_BOUND}")
        fixed = point(cfg, generators, prompts_for(ITEMS_PER_JUDGE * most), url, 1, meter)
        print(f"  judges {most:>2}, bound {FIXED_BOUND}: {summary_line(fixed)}", flush=True)
    return results, fixed


def generator_sweep(cache: str | None, meter: DriverMeter,
                    replicas: tuple[int, ...] = GENERATOR_REPLICAS) -> dict[int, dict]:
    """Verdicts/s with the rule judge as generator replicas grow: generation's ceiling."""
    results = {}
    with tempfile.TemporaryDirectory() as run_dir:
        for count in replicas:
            cfg = bench_config(f"{run_dir}/g{count}", cache, count, 0, None)
            with started_generators(cfg) as generators:
                results[count] = point(cfg, generators,
                                       prompts_for(ITEMS_PER_GENERATOR * count), None,
                                       ITERATIONS, meter)
            print(f"  generators {count}: {summary_line(results[count])}", flush=True)
    return results


def batch_sweep(cache: str | None, url: str, meter: DriverMeter, judges: int = 8
                ) -> dict[int, dict[str, Any]]:
    """Verdicts/s at `judges` http replicas as their batch size grows."""
    results = {}
    with tempfile.TemporaryDirectory() as run_dir, \
            started_generators(bench_config(run_dir, cache, 1, judges, url)) as generators:
        for size in BATCH_SIZES:
            cfg = bench_config(f"{run_dir}/b{size}", cache, 1, judges, url, size)
            results[size] = point(cfg, generators, prompts_for(ITEMS_PER_JUDGE * judges),
                                  url, BATCH_ITERATIONS, meter)
            print(f"  batch {size:>2}: {summary_line(results[size])}", flush=True)
    return results


def summary_line(result: dict[str, Any]) -> str:
    m = result["median"]
    extra = (f", judges busy {m['judge_utilisation']:.0%}"
             if "judge_utilisation" in m else "")
    return (f"{m['verdicts_per_s']:.1f} verdicts/s, driver CPU {m['driver_cpu_share']:.1%}, "
            f"{m['driver_rss_mib']:.0f} MiB, queue {m['max_requests_waiting']:.0f}{extra}")


def efficiency(judges: dict[int, dict[str, Any]]) -> float:
    """Verdicts/s at the most replicas over that many times those of the fewest."""
    low, high = min(judges), max(judges)
    rate = {k: judges[k]["median"]["verdicts_per_s"] for k in (low, high)}
    return rate[high] / (rate[low] * high / low)


def run(runs: int = 1, cache: str | None = None) -> dict[str, Any]:
    """Every sweep, on one simulated cluster and one simulated judge API (`runs` is
    unused: each point takes the median of its iterations)."""
    meter = DriverMeter()
    with simulated_cluster(), judge_api() as url:
        print("generators (rule judge):", flush=True)
        generators = generator_sweep(cache, meter)
        print("http judges (one generator):", flush=True)
        judges, fixed = judge_sweep(cache, url, meter)
        print("judge batch size (8 replicas):", flush=True)
        batches = batch_sweep(cache, url, meter)
    most = max(judges)
    top = judges[most]["median"]
    memory = [row["driver_rss_mib"] for row in judges[most]["iterations"]]
    ratio = efficiency(judges)
    return {
        "ratio": ratio,
        "goal": "linear until generation bounds; driver CPU <= 2% at 32 judges; flat memory",
        "detail": (f"{top['verdicts_per_s']:.1f} verdicts/s at {most} judges "
                   f"(efficiency {ratio:.2f}), driver CPU {top['driver_cpu_share']:.1%}, "
                   f"memory {memory[0]:.0f} -> {memory[-1]:.0f} MiB over "
                   f"{len(memory)} iterations"),
        "latency_s": LATENCY_S, "rate_limited": RATE_LIMITED,
        "items_per_judge": ITEMS_PER_JUDGE, "items_per_generator": ITEMS_PER_GENERATOR,
        "generators": generators, "judges": judges, "fixed_bound": {FIXED_BOUND: fixed},
        "batch_sizes": batches, "driver_rss_mib": memory,
    }
