"""rollout_overhead: tokens/s through the generator pool (a Ray actor + the driver's
streaming) divided by raw vLLM `LLM.generate` in one process, same model, prompts and
sampling. Goal >= 0.90.

Both sides get the same engine work: the replica reserves both CPUs (Ray gives an actor as
many torch threads as CPUs it reserves; the raw engine in this process uses all of them) and
takes all prompts as one batch (the raw call's batch). `engine_share` is the replica's own
`LLM.generate` seconds over the driver's wall time: what is left is orchestration."""

from __future__ import annotations

import gc
import os
from typing import Any

from bench.common import BENCH_MODEL, repeat, summarize, timed

PROMPTS = 64
SAMPLES = 4
MAX_TOKENS = 64


def _config(cache: str | None):
    from rlaif_ray.config import load_config

    return load_config("conf/default.yaml", [
        f"generator.model={BENCH_MODEL}", f"generator.samples_per_prompt={SAMPLES}",
        f"generator.max_tokens={MAX_TOKENS}", "generator.max_model_len=1024",
        "generator.kv_cache_gib=1", f"generator.batch_size={PROMPTS}",
        "generator.resources.num_cpus=2",
        f"prompts.limit={PROMPTS}"] + ([f"cache_dir={cache}"] if cache else []))


def run(runs: int = 3, cache: str | None = None) -> dict[str, Any]:
    from rlaif_ray.data.prompts import load_prompts
    from rlaif_ray.model_source import ModelSource
    from rlaif_ray.models import resolve_model
    from rlaif_ray.vllm_engine import EngineSpec, create_llm

    cfg = _config(cache)
    model = resolve_model(BENCH_MODEL, cfg.cache_dir)
    prompts = load_prompts(limit=PROMPTS)

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import SamplingParams

    engine = [create_llm(EngineSpec.from_config(cfg.generator,
                                                    ModelSource("generator.model", model), 0))]
    tok = engine[0].get_tokenizer()
    texts = [tok.apply_chat_template([{"role": "user", "content": p.prompt}],
                                     add_generation_prompt=True, tokenize=False) for p in prompts]
    params = SamplingParams(n=SAMPLES, max_tokens=MAX_TOKENS, temperature=1.0, logprobs=0)
    engine[0].generate(texts[:4], params, use_tqdm=False)  # warm-up

    def raw() -> float:
        seconds, outs = timed(lambda: engine[0].generate(texts, params, use_tqdm=False))
        return sum(len(s.token_ids) for o in outs for s in o.outputs) / seconds

    raw_stats = repeat(raw, runs)
    engine.clear()  # free the raw engine's memory before the pool starts its own
    gc.collect()

    import ray

    from rlaif_ray.cluster import connect
    from rlaif_ray.rollout.generator import SamplingSpec
    from rlaif_ray.rollout.pool import GeneratorPool

    connect(cfg.ray)
    pool = GeneratorPool.from_config(cfg, model)
    sampling = SamplingSpec(n=SAMPLES, max_tokens=MAX_TOKENS)
    pool.generate(prompts[:4], sampling=sampling)  # warm-up

    engine_shares: list[float] = []

    def through_pool() -> float:
        seconds, rows = timed(lambda: pool.generate(prompts, sampling=sampling))
        # one generate call per batch: its rows share the call's seconds
        calls = {(r.generator_replica, r.generation_s) for r in rows}
        engine_shares.append(sum(s for _, s in calls) / seconds)
        return sum(len(r.response_token_ids) for r in rows) / seconds

    try:
        pool_stats = repeat(through_pool, runs)
    finally:
        pool.shutdown()
        ray.shutdown()
    detail = (f"pool {pool_stats['median']:.0f} tok/s vs raw vLLM "
              f"{raw_stats['median']:.0f} tok/s")
    return {"unit": "tokens/s", "detail": detail, "raw_vllm": raw_stats,
            "generator_pool": pool_stats,
            "engine_share": summarize(engine_shares),
            "ratio": pool_stats["median"] / raw_stats["median"], "goal": ">= 0.90",
            "setup": {"model": BENCH_MODEL, "prompts": PROMPTS, "samples": SAMPLES,
                      "max_tokens": MAX_TOKENS, "replicas": 1, "batch_size": PROMPTS,
                      "replica_cpus": 2}}
