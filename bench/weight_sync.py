"""weight_sync: seconds to push the ~100M model to 2 generators, verification included, and
its effective bytes/s divided by a bare in-process copy of the same tensors measured in the
same run. Goal >= 0.5."""

from __future__ import annotations

from typing import Any

import torch

from bench.common import BENCH_MODEL, repeat, timed


def run(runs: int = 3, cache: str | None = None) -> dict[str, Any]:
    import ray
    from safetensors.torch import load_file

    from rlaif_ray.cluster import connect
    from rlaif_ray.config import load_config
    from rlaif_ray.models import resolve_model
    from rlaif_ray.rollout.pool import GeneratorPool

    cfg = load_config("conf/default.yaml", [
        f"generator.model={BENCH_MODEL}", "generator.replicas=2", "generator.max_model_len=1024",
        "generator.kv_cache_gib=0.5"] + ([f"cache_dir={cache}"] if cache else []))
    model = resolve_model(BENCH_MODEL, cfg.cache_dir)
    weights = load_file(f"{model}/model.safetensors")
    size = sum(t.numel() * t.element_size() for t in weights.values())

    def bare_copy() -> float:
        seconds, _ = timed(lambda: {k: v.clone() for k, v in weights.items()})
        return size / seconds

    copy_stats = repeat(bare_copy, runs)
    connect(cfg.ray)
    pool = GeneratorPool.from_config(cfg, model)
    probe = pool.reference_probe(weights)  # the trainer computes this on its side
    seconds_seen: list[float] = []

    def sync() -> float:
        seconds, _ = timed(lambda: pool.update_weights(weights, pool.version + 1, probe=probe))
        seconds_seen.append(seconds)
        return size / seconds

    try:
        sync_stats = repeat(sync, runs)
    finally:
        pool.shutdown()
        ray.shutdown()
    detail = (f"{size / 1e6:.0f} MB to 2 replicas in {size / sync_stats['median']:.2f} s "
              f"({sync_stats['median'] / 1e6:.0f} MB/s) vs copy "
              f"{copy_stats['median'] / 1e6:.0f} MB/s")
    return {"unit": "bytes/s", "detail": detail, "bytes": size, "bare_copy": copy_stats,
            "sync": sync_stats,
            "sync_seconds": {"median": sorted(seconds_seen)[len(seconds_seen) // 2],
                             "runs": seconds_seen},
            "ratio": sync_stats["median"] / copy_stats["median"], "goal": ">= 0.5",
            "setup": {"model": BENCH_MODEL, "replicas": 2, "dtype": str(torch.float32)}}
