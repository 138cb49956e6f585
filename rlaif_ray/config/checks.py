"""The config's checks beyond types: ranges, names against the registries they choose from
(estimators, ensembles, rule checks, ...), and settings that cannot go together. Each
failure is a ConfigError naming the key, what it must be and the value given."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.ensemble import ENSEMBLES
from rlaif_ray.judge.kinds import JUDGE_KINDS
from rlaif_ray.judge.modes import RUBRIC_MODES
from rlaif_ray.judge.reward import PAIRWISE_REWARDS
from rlaif_ray.judge.rules import CHECKS
from rlaif_ray.lora import VLLM_RANKS
from rlaif_ray.review.live import REVIEW_MODES
from rlaif_ray.storage import scheme_problem
from rlaif_ray.sync.transports import TRANSPORTS
from rlaif_ray.tracking import TRACKERS
from rlaif_ray.train.advantages import ESTIMATORS
from rlaif_ray.train.attention import SDPA_FP32
from rlaif_ray.train.kl import KL_ESTIMATORS

_DTYPES = ("float32", "bfloat16", "float16", "auto")
_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
# What vLLM's SamplingParams (and the OpenAI API) accept, checked here so that a bad value
# stops the run before Ray starts rather than in an engine.
MAX_TEMPERATURE = 2.0
TEMPERATURE_RANGE = f"must be in [0, {MAX_TEMPERATURE:g}] (the range vLLM and OpenAI accept)"


# transformers' attn_implementation names and rlaif_ray.train.attention's sdpa_fp32 (a
# kernels-hub repo, org/name, is accepted too).
ATTENTION_KERNELS = ("sdpa", SDPA_FP32, "eager", "flash_attention_2", "flash_attention_3",
                     "flex_attention")


def _require(ok: bool, key: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"key '{key}' {message} (got {value!r})")


def validate(cfg: DictConfig) -> None:
    """Range and choice checks that types alone cannot express."""
    run, gen, ray_cfg = cfg.run, cfg.generator, cfg.ray
    _require(run.iterations >= 1, "run.iterations", "must be >= 1", run.iterations)
    _require(bool(run.dir), "run.dir", "must not be empty", run.dir)
    problem = scheme_problem(run.dir)
    _require(problem is None, "run.dir", f"{problem}", run.dir)
    _require(run.mode in ("sync", "async"), "run.mode", "must be 'sync' or 'async'", run.mode)
    _require(0 < run.stall_timeout_s < cfg.trainer.step_timeout_s, "run.stall_timeout_s",
             "must be > 0 and below trainer.step_timeout_s", run.stall_timeout_s)
    _require(cfg.prompts.too_long in ("skip", "truncate", "error"), "prompts.too_long",
             "must be 'skip', 'truncate' or 'error'", cfg.prompts.too_long)
    limit = cfg.prompts.limit
    _require(limit is None or limit >= 1, "prompts.limit", "must be >= 1 or null", limit)
    for key in ("replicas", "samples_per_prompt", "max_tokens", "batch_size",
                "max_inflight_per_replica", "tensor_parallel_size"):
        _require(gen[key] >= 1, f"generator.{key}", "must be >= 1", gen[key])
    _require(0 <= gen.temperature <= MAX_TEMPERATURE, "generator.temperature",
             TEMPERATURE_RANGE, gen.temperature)
    _require(gen.temperature > 0 or gen.samples_per_prompt == 1, "generator.temperature",
             "must be > 0 when generator.samples_per_prompt > 1 (greedy decoding gives one "
             "answer)", gen.temperature)
    _require(0 < gen.top_p <= 1, "generator.top_p", "must be in (0, 1]", gen.top_p)
    _require(gen.max_model_len > gen.max_tokens, "generator.max_model_len",
             "must exceed generator.max_tokens", gen.max_model_len)
    _require(gen.kv_cache_gib > 0, "generator.kv_cache_gib", "must be > 0", gen.kv_cache_gib)
    _require(gen.sync_timeout_s > 0, "generator.sync_timeout_s", "must be > 0",
             gen.sync_timeout_s)
    _require(gen.sync_transport in TRANSPORTS, "generator.sync_transport",
             _one_of(TRANSPORTS), gen.sync_transport)
    _require(gen.sync_backend in ("auto", "nccl", "gloo"), "generator.sync_backend",
             "must be 'auto', 'nccl' or 'gloo'", gen.sync_backend)
    if gen.sync_probe_tolerance is not None:
        _require(gen.sync_probe_tolerance > 0, "generator.sync_probe_tolerance",
                 "must be > 0 (or null)", gen.sync_probe_tolerance)
    _require(gen.sync_bucket_mb >= 1, "generator.sync_bucket_mb", "must be >= 1",
             gen.sync_bucket_mb)
    nccl = gen.sync_backend == "nccl" or (gen.sync_backend == "auto" and cfg.trainer.use_gpu)
    _require(gen.sync_transport != "collective" or not nccl
             or (cfg.trainer.use_gpu and gen.resources.num_gpus > 0),
             "generator.sync_backend", "nccl needs GPUs on both sides (trainer.use_gpu=true "
             "and generator.resources.num_gpus > 0); use gloo otherwise", gen.sync_backend)
    _require(gen.dtype in _DTYPES, "generator.dtype", f"must be one of {_DTYPES}", gen.dtype)
    _require(gen.placement_strategy in _STRATEGIES, "generator.placement_strategy",
             f"must be one of {_STRATEGIES}", gen.placement_strategy)
    _validate_engine(gen, "generator")
    _validate_judging(cfg)
    _validate_training(cfg)
    _require(ray_cfg.pool_timeout_s > 0, "ray.pool_timeout_s", "must be > 0",
             ray_cfg.pool_timeout_s)




def _one_of(registry) -> str:
    """The error text for a name that is not in `registry`: the valid ones, in order."""
    return f"must be one of {', '.join(registry)}"


def _validate_judging(cfg: DictConfig) -> None:
    rubric, voting = cfg.rubric, cfg.voting
    _require(rubric.mode in RUBRIC_MODES, "rubric.mode", _one_of(RUBRIC_MODES), rubric.mode)
    _require(len(rubric.dimensions) > 0, "rubric.dimensions", "must not be empty", {})
    for name, dim in rubric.dimensions.items():
        _require(dim.weight >= 0, f"rubric.dimensions.{name}.weight", "must be >= 0", dim.weight)
    _require(sum(d.weight for d in rubric.dimensions.values()) > 0, "rubric.dimensions",
             "weights must not all be 0", OmegaConf.to_container(rubric.dimensions))
    _require(voting.votes >= 1, "voting.votes", "must be >= 1", voting.votes)
    _require(0 < voting.agreement_threshold <= 1, "voting.agreement_threshold",
             "must be in (0, 1]", voting.agreement_threshold)
    _require(0 <= voting.max_score_spread <= 1, "voting.max_score_spread",
             "must be in [0, 1]", voting.max_score_spread)
    _require(0 < voting.min_valid_fraction <= 1, "voting.min_valid_fraction",
             "must be in (0, 1]", voting.min_valid_fraction)
    _require(1 <= voting.quorum <= max(len(cfg.judges), 1), "voting.quorum",
             "must be between 1 and the number of judges", voting.quorum)
    _require(voting.ensemble in ENSEMBLES, "voting.ensemble", _one_of(ENSEMBLES),
             voting.ensemble)
    _require(0 < voting.calibration_prior <= 1, "voting.calibration_prior", "must be in (0, 1]",
             voting.calibration_prior)
    _require(voting.calibration_prior_items >= 1, "voting.calibration_prior_items",
             "must be at least 1", voting.calibration_prior_items)
    _require(cfg.reward.pairwise in PAIRWISE_REWARDS, "reward.pairwise",
             _one_of(PAIRWISE_REWARDS), cfg.reward.pairwise)
    _require(0 <= cfg.reward.length_penalty <= 1, "reward.length_penalty",
             "must be in [0, 1]", cfg.reward.length_penalty)
    _require(0 <= cfg.review.confidence_threshold <= 1, "review.confidence_threshold",
             "must be in [0, 1]", cfg.review.confidence_threshold)
    _require(cfg.review.mode in REVIEW_MODES, "review.mode",
             f"must be one of {list(REVIEW_MODES)}", cfg.review.mode)
    for index, tracker in enumerate(cfg.run.trackers):
        _require(tracker in TRACKERS, f"run.trackers.{index}", _one_of(TRACKERS), tracker)
    _require(len(set(cfg.run.trackers)) == len(cfg.run.trackers), "run.trackers",
             "names a tracker twice", list(cfg.run.trackers))
    _require(cfg.stream.max_batches_in_flight is None or cfg.stream.max_batches_in_flight >= 1,
             "stream.max_batches_in_flight", "must be >= 1 or null",
             cfg.stream.max_batches_in_flight)
    names = [j.name for j in cfg.judges]
    for i, judge in enumerate(cfg.judges):
        key = f"judges[{i}]"
        _require(names.count(judge.name) == 1, f"{key}.name", "must be unique", judge.name)
        _require(judge.kind in JUDGE_KINDS, f"{key}.kind", _one_of(JUDGE_KINDS), judge.kind)
        _require(judge.weight > 0, f"{key}.weight", "must be > 0", judge.weight)
        for field_name in ("replicas", "batch_size", "max_inflight_per_replica",
                           "concurrency", "max_tokens", "circuit_breaker_failures"):
            _require(judge[field_name] >= 1, f"{key}.{field_name}", "must be >= 1",
                     judge[field_name])
        _require(judge.max_retries >= 0, f"{key}.max_retries", "must be >= 0",
                 judge.max_retries)
        _require(0 <= judge.temperature <= MAX_TEMPERATURE, f"{key}.temperature",
                 TEMPERATURE_RANGE, judge.temperature)
        for side, price in (judge.price_per_mtok or {}).items():
            _require(price >= 0, f"{key}.price_per_mtok.{side}", "must be >= 0", price)
        _require(judge.kind == "rule" or judge.temperature > 0 or voting.votes == 1,
                 f"{key}.temperature", "must be > 0 when voting.votes > 1 (greedy votes "
                 "are all the same; or set voting.votes=1)", judge.temperature)
        scaling = (judge.min_replicas, judge.max_replicas)
        _require((scaling[0] is None) == (scaling[1] is None), f"{key}.max_replicas",
                 "must be set together with min_replicas", scaling)
        if scaling[0] is not None:
            _require(1 <= scaling[0] <= scaling[1], f"{key}.min_replicas",
                     "must satisfy 1 <= min_replicas <= max_replicas", scaling)
            _require(judge.kind != "rule", f"{key}.min_replicas",
                     "does not apply to a rule judge", scaling)
        if judge.kind == "http":
            _require(bool(judge.base_url), f"{key}.base_url", "is required for an http judge",
                     judge.base_url)
        if judge.kind == "rule":
            _require(len(judge.checks) > 0, f"{key}.checks", "must list at least one check", [])
            for j, check in enumerate(judge.checks):
                _validate_check(check, f"{key}.checks[{j}]")
        else:
            _validate_engine(judge, key)


def _validate_training(cfg: DictConfig) -> None:
    tr, cur = cfg.trainer, cfg.curriculum
    for key in ("workers", "micro_batch_size", "ppo_epochs", "keep_checkpoints",
                "checkpoint_every"):
        _require(tr[key] >= 1, f"trainer.{key}", "must be >= 1", tr[key])
    _require(tr.zero_stage in (0, 1, 2, 3), "trainer.zero_stage", "must be 0, 1, 2 or 3",
             tr.zero_stage)
    _require(tr.dtype in ("float32", "bfloat16"), "trainer.dtype",
             "must be 'float32' or 'bfloat16'", tr.dtype)
    _require(tr.advantage_estimator in ESTIMATORS, "trainer.advantage_estimator",
             _one_of(ESTIMATORS), tr.advantage_estimator)
    _require(tr.critic in ("separate", "shared"), "trainer.critic",
             "must be separate or shared", tr.critic)
    _require(tr.vf_coef >= 0, "trainer.vf_coef", "must be >= 0", tr.vf_coef)
    _require(tr.kl_estimator in KL_ESTIMATORS, "trainer.kl_estimator",
             _one_of(KL_ESTIMATORS), tr.kl_estimator)
    for key in ("actor_lr", "critic_lr", "clip_eps", "value_clip", "step_timeout_s",
                "health_check_interval_s"):
        _require(tr[key] > 0, f"trainer.{key}", "must be > 0", tr[key])
    for key in ("gamma", "lam"):
        _require(0 <= tr[key] <= 1, f"trainer.{key}", "must be in [0, 1]", tr[key])
    _require(tr.kl_coef >= 0, "trainer.kl_coef", "must be >= 0", tr.kl_coef)
    _require(tr.max_failures >= -1, "trainer.max_failures", "must be >= 0, or -1 (no limit)",
             tr.max_failures)
    _validate_update(cfg)
    _validate_lora(tr.lora)
    _validate_resources(tr.resources, "trainer.resources")
    for key in ("start_confidence", "end_confidence"):
        _require(0 <= cur[key] <= 1, f"curriculum.{key}", "must be in [0, 1]", cur[key])
    _require(cur.anneal_iterations >= 1, "curriculum.anneal_iterations", "must be >= 1",
             cur.anneal_iterations)


def _validate_lora(lora: DictConfig) -> None:
    """`trainer.lora`: a rank vLLM can serve, a positive alpha, a dropout below 1, and at
    least one module to adapt."""
    _require(0 <= lora.rank <= VLLM_RANKS[-1], "trainer.lora.rank",
             f"must be 0 (full fine-tuning) or a rank up to {VLLM_RANKS[-1]}", lora.rank)
    _require(lora.alpha > 0, "trainer.lora.alpha", "must be > 0", lora.alpha)
    _require(0 <= lora.dropout < 1, "trainer.lora.dropout", "must be in [0, 1)", lora.dropout)
    _require(len(lora.target_modules) > 0, "trainer.lora.target_modules",
             "must name at least one module", list(lora.target_modules))


def _validate_update(cfg: DictConfig) -> None:
    """The PPO update's batching, early stop, old log-probs and threads."""
    tr = cfg.trainer
    per_step = tr.micro_batch_size * tr.workers
    if tr.mini_batch_size is not None:
        _require(tr.mini_batch_size >= per_step and tr.mini_batch_size % per_step == 0,
                 "trainer.mini_batch_size", f"must be a multiple of trainer.micro_batch_size "
                 f"x trainer.workers ({per_step})", tr.mini_batch_size)
    for key in ("target_kl", "torch_threads", "forward_batch_size", "critic_micro_batch_size"):
        if tr[key] is not None:
            _require(tr[key] > 0, f"trainer.{key}", "must be > 0 (or null)", tr[key])
    if tr.critic_mini_batch_size is not None:
        _require(tr.critic_mini_batch_size >= tr.workers
                 and tr.critic_mini_batch_size % tr.workers == 0,
                 "trainer.critic_mini_batch_size", "must be a multiple of trainer.workers",
                 tr.critic_mini_batch_size)
    _require(tr.old_logprobs in ("auto", "generator", "recompute"), "trainer.old_logprobs",
             "must be auto, generator or recompute", tr.old_logprobs)
    _require(tr.old_logprobs != "generator" or cfg.generator.top_p == 1,
             "trainer.old_logprobs", "'generator' needs generator.top_p = 1 (top-p "
             "log-probs are of the truncated distribution); use auto or recompute",
             tr.old_logprobs)
    if tr.attn_implementation is not None:
        _require(tr.attn_implementation in ATTENTION_KERNELS or "/" in tr.attn_implementation,
                 "trainer.attn_implementation", f"must be one of {', '.join(ATTENTION_KERNELS)}"
                 " or a kernels-hub repo (org/name), or null", tr.attn_implementation)
    if tr.behaviour_is_cap is not None:
        _require(tr.behaviour_is_cap >= 1, "trainer.behaviour_is_cap", "must be >= 1 (or null)",
                 tr.behaviour_is_cap)


def _validate_check(check: DictConfig, key: str) -> None:
    _require(check.type in CHECKS, f"{key}.type", _one_of(CHECKS),
             check.type)
    _require(check.weight > 0, f"{key}.weight", "must be > 0", check.weight)
    if check.type in ("regex", "not_regex", "contains"):
        _require(bool(check.pattern), f"{key}.pattern", f"is required for {check.type}",
                 check.pattern)
    if check.type in ("regex", "not_regex"):
        try:
            re.compile(check.pattern)
        except re.error as err:
            raise ConfigError(f"key '{key}.pattern' is not a valid regex: {err}") from None
    if check.type in ("max_words", "min_words"):
        _require(check.value is not None and check.value >= 0, f"{key}.value",
                 f"must be >= 0 for {check.type}", check.value)


def _validate_engine(section: DictConfig, key: str) -> None:
    """An engine's resources and threads (`generator` or a `judges[]` entry)."""
    _validate_resources(section.resources, f"{key}.resources")
    if section.torch_threads is not None:
        _require(section.torch_threads > 0, f"{key}.torch_threads", "must be > 0 (or null)",
                 section.torch_threads)


def _validate_resources(res: DictConfig, key: str) -> None:
    _require(res.num_cpus >= 0, f"{key}.num_cpus", "must be >= 0", res.num_cpus)
    _require(res.num_gpus >= 0, f"{key}.num_gpus", "must be >= 0", res.num_gpus)
    _require(res.num_cpus + res.num_gpus + sum(res.custom.values()) > 0, key,
             "must request some resource", OmegaConf.to_container(res))
    for name, amount in res.custom.items():
        _require(amount > 0, f"{key}.custom.{name}", "must be > 0", amount)
