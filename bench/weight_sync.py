"""weight_sync: seconds to push the ~100M model to 2 generators, verification included, and
its effective bytes/s divided by a bare in-process copy of the same tensors (into tensors
allocated beforehand: a memcpy) measured in the same run. Goal >= 0.5.

Also measured in the same run: the engine's own floor, i.e. one in-process vLLM engine
loading the same weights (`reload_weights`) and scoring the probe, with no Ray in between;
`ratio_to_engine_floor` is that floor's seconds over the pool's. The first push into a
fresh engine is reported apart (`first_sync_s`): vLLM prepares its in-place reload then.

`lora`: the same pool as a LoRA run's generators (`trainer.lora.rank` LORA_RANK, the
config's target modules), pushed a trained-looking adapter of that rank: its bytes and
seconds, and both as ratios to the full weights' sync measured above."""

from __future__ import annotations

import os
from typing import Any

import torch

from bench.common import BENCH_MODEL, repeat, summarize, timed

LORA_RANK = 8


def _engine_floor(model: str, weights: dict[str, torch.Tensor], token_ids: list[int],
                  runs: int) -> dict[str, Any]:
    """Seconds for one in-process engine to load `weights` and score the probe."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from rlaif_ray.model_source import ModelSource
    from rlaif_ray.vllm_engine import EngineSpec, create_llm

    llm = create_llm(EngineSpec(model=ModelSource("model", model), max_model_len=1024,
                                kv_cache_gib=0.5))
    params = SamplingParams(max_tokens=1, prompt_logprobs=0)
    items = list(weights.items())

    def load_and_probe() -> float:
        seconds, _ = timed(lambda: (
            llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items}),
            llm.reset_prefix_cache(),
            llm.generate([TokensPrompt(prompt_token_ids=token_ids)], params, use_tqdm=False)))
        return seconds

    load_and_probe()  # the engine's one-time reload preparation
    return repeat(load_and_probe, runs)


def _adapter(model: str, spec) -> dict[str, torch.Tensor]:
    """An adapter of `spec` on the model at `model`, its B matrices non-zero (as after
    training), named as the trainer sends it."""
    from transformers import AutoModelForCausalLM

    from rlaif_ray.lora import adapter_state, with_adapter

    peft_model = with_adapter(AutoModelForCausalLM.from_pretrained(model), spec)
    torch.manual_seed(0)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.01)
    return {k: v.detach().clone() for k, v in
            adapter_state(peft_model, peft_model.state_dict()).items()}


def _lora_sync(cfg, model: str, runs: int) -> dict[str, Any]:
    """Seconds and bytes of adapter syncs to a LoRA run's 2 generators."""
    import ray

    from rlaif_ray.cluster import connect
    from rlaif_ray.lora import LoraSpec
    from rlaif_ray.rollout.pool import GeneratorPool

    cfg.trainer.lora.rank = LORA_RANK
    spec = LoraSpec.from_section(cfg.trainer.lora)  # the adapter the pool's engines expect
    adapter = _adapter(model, spec)
    size = sum(t.numel() * t.element_size() for t in adapter.values())
    connect(cfg.ray)
    pool = GeneratorPool.from_config(cfg, model)
    probe = pool.reference_probe(adapter)
    try:
        first_s, _ = timed(lambda: pool.update_weights(adapter, pool.version + 1, probe=probe))
        seconds = repeat(lambda: timed(lambda: pool.update_weights(
            adapter, pool.version + 1, probe=probe))[0], 3 * runs)
    finally:
        pool.shutdown()
        ray.shutdown()
    return {"rank": LORA_RANK, "target_modules": list(spec.target_modules), "bytes": size,
            "first_sync_s": first_s,
            "sync_seconds": seconds}


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

    targets = {k: torch.empty_like(v) for k, v in weights.items()}
    for name, tensor in targets.items():  # touch the pages once: a copy, not page faults
        tensor.copy_(weights[name])

    def bare_copy() -> float:
        seconds, _ = timed(lambda: [targets[k].copy_(v) for k, v in weights.items()])
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
        first_s, _ = timed(lambda: pool.update_weights(weights, pool.version + 1, probe=probe))
        sync_stats = repeat(sync, 3 * runs)  # ~1 s each, and noisy: more of them
    finally:
        pool.shutdown()
        ray.shutdown()
    floor = _engine_floor(model, weights, probe.token_ids, runs)
    sync_seconds = summarize(seconds_seen)
    sync_s = sync_seconds["median"]
    lora = _lora_sync(cfg, model, runs)
    lora["bytes_ratio_to_full"] = lora["bytes"] / size
    lora["seconds_ratio_to_full"] = lora["sync_seconds"]["median"] / sync_s
    detail = (f"{size / 1e6:.0f} MB to 2 replicas in {sync_s:.2f} s "
              f"({sync_stats['median'] / 1e6:.0f} MB/s) vs copy "
              f"{copy_stats['median'] / 1e6:.0f} MB/s; one engine alone: load + probe "
              f"{floor['median']:.2f} s; a rank-{LORA_RANK} adapter "
              f"({lora['bytes'] / 1e6:.1f} MB) in {lora['sync_seconds']['median']:.2f} s")
    return {"unit": "bytes/s", "detail": detail, "bytes": size, "bare_copy": copy_stats,
            "sync": sync_stats, "sync_seconds": sync_seconds,
            "first_sync_s": first_s, "engine_floor_seconds": floor,
            "ratio_to_engine_floor": floor["median"] / sync_s, "lora": lora,
            "ratio": sync_stats["median"] / copy_stats["median"], "goal": ">= 0.5",
            "setup": {"model": BENCH_MODEL, "replicas": 2, "dtype": str(torch.float32)}}
