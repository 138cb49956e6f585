"""Structured configuration: OmegaConf dataclasses, YAML loading, overrides, validation.

Every key a user can set is declared here with its type and default; `load_config`
merges a YAML file and `key=value` overrides onto this schema and validates ranges, so a
typo, a wrong type or an impossible value fails before Ray starts, naming the key.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.ensemble import ENSEMBLES
from rlaif_ray.judge.reward import PAIRWISE_REWARDS
from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.judge.rules import CHECKS
from rlaif_ray.storage import scheme_problem
from rlaif_ray.train.advantages import ESTIMATORS
from rlaif_ray.train.attention import SDPA_FP32
from rlaif_ray.train.kl import KL_ESTIMATORS


@dataclass
class RunConfig:
    dir: str = "runs/default"
    iterations: int = 3
    seed: int = 0
    resume: bool = False
    # sync: generate -> judge -> train -> sync in turn. async: one-step off-policy, the
    # rollout of iteration k+1 (with policy k) overlaps training on iteration k.
    mode: str = "sync"
    # The longest the driver waits on a replica, the trainer or the exchange without any
    # progress (a reply, a batch taken); then the run stops, naming the stage and iteration.
    stall_timeout_s: float = 300.0


@dataclass
class PromptsConfig:
    # JSONL or Parquet file with a `prompt` column (optional `id`); null = built-in set.
    path: str | None = None
    # Use only the first N prompts (null = all).
    limit: int | None = None
    # Prompts that leave no room for generator.max_tokens in generator.max_model_len:
    # skip (counted and reported), truncate (keep the start), or error.
    too_long: str = "skip"


@dataclass
class ResourcesConfig:
    """Resources of one replica; the pool reserves `replicas` bundles of these."""

    num_cpus: float = 0.5
    num_gpus: float = 0.0
    # Custom Ray resources, e.g. {generator_gpu: 1} to pin a pool to its node type.
    custom: dict[str, float] = field(default_factory=dict)


@dataclass
class GeneratorConfig:
    model: str = "tiny-llama"
    replicas: int = 1
    samples_per_prompt: int = 4
    max_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    # Prompts per request sent to one replica, and requests queued per replica.
    batch_size: int = 8
    max_inflight_per_replica: int = 2
    dtype: str = "float32"
    max_model_len: int = 512
    # KV cache per engine (GiB of host RAM on CPU).
    kv_cache_gib: float = 0.25
    tensor_parallel_size: int = 1
    # A weight update that has not finished on every replica by then fails loudly.
    sync_timeout_s: float = 300.0
    # Largest |log-prob difference| accepted by the post-sync probe; null: 0.05 when the
    # generator and the trainer compute in float32, else 0.25 (16-bit kernels round apart).
    sync_probe_tolerance: float | None = None
    # How new weights reach the replicas: "object_store" (the trainer puts them once, every
    # replica reads them zero-copy) or "collective" (a torch.distributed broadcast from the
    # trainer's rank 0: NCCL between GPUs, gloo on CPU); see docs/training.md.
    sync_transport: str = "object_store"
    # Backend of the collective transport: "auto" = nccl when trainer.use_gpu, else gloo.
    sync_backend: str = "auto"
    # Size of each broadcast bucket (tensors are packed into buckets of at most this).
    sync_bucket_mb: int = 256
    # Torch threads the engine serves with; null: vLLM's serving default of one (multi-
    # threaded ops spin-wait between steps). More pays off on a model large enough for its
    # matrix products to dominate a step, with cores the trainer is not using then.
    torch_threads: int | None = None
    placement_strategy: str = "PACK"
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)


@dataclass
class DimensionConfig:
    weight: float = 1.0
    description: str = ""


def default_dimensions() -> dict[str, DimensionConfig]:
    """The rubric's dimensions and weights when a config names none."""
    return {name: DimensionConfig(weight, description)
            for name, (weight, description) in DEFAULT_DIMENSIONS.items()}


@dataclass
class RubricConfig:
    # pointwise: score each answer 1-10 per dimension; pairwise: pick A, B or tie per pair.
    mode: str = "pointwise"
    dimensions: dict[str, DimensionConfig] = field(default_factory=default_dimensions)
    # Pointwise: an answer whose normalised safety score is below this gets reward 0.
    safety_gate: float | None = None
    # Judge prompt templates (files); null = the built-in ones.
    pointwise_template: str | None = None
    pairwise_template: str | None = None


@dataclass
class CheckConfig:
    """One programmatic check of a `rule` judge."""

    type: str = "regex"  # regex | not_regex | contains | max_words | min_words | json_valid
    pattern: str | None = None  # regex / not_regex / contains
    value: int | None = None  # max_words / min_words
    weight: float = 1.0


@dataclass
class JudgeConfig:
    name: str = "judge"
    kind: str = "llm"  # llm | http | rule
    weight: float = 1.0
    replicas: int = 1
    # Autoscaling (both set): start with min_replicas, add one while more than
    # scale_up_backlog requests per replica wait, retire replicas idle scale_down_idle_s.
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_up_backlog: int = 4
    scale_down_idle_s: float = 30.0
    # llm: a vLLM engine per replica; http: the model name sent to the endpoint.
    model: str = "tiny-judge"
    temperature: float = 1.0
    max_tokens: int = 128
    dtype: str = "float32"
    max_model_len: int = 2048
    kv_cache_gib: float = 0.25
    tensor_parallel_size: int = 1
    # Torch threads the engine serves with; null: vLLM's serving default of one.
    torch_threads: int | None = None
    placement_strategy: str = "PACK"
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    # Vote requests sent to one replica at a time (items per request, requests queued).
    batch_size: int = 16
    max_inflight_per_replica: int = 2
    # http: an OpenAI-compatible endpoint; the API key is read from env var `api_key_env`.
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    # Circuit breaker: after this many requests in a row fail outright (every vote of the
    # request unanswered after retries) the judge is out for the rest of the iteration.
    circuit_breaker_failures: int = 5
    # Decode votes under the rubric's JSON schema (llm: vLLM structured output; http: the
    # server's response_format). Off: free text, parsed strictly (failures abstain).
    structured: bool = True
    # rule: programmatic checks; score = weighted share passed.
    checks: list[CheckConfig] = field(default_factory=list)


@dataclass
class VotingConfig:
    # Votes per item and judge (pairwise: per order, so 2x votes per pair).
    votes: int = 3
    # Pairwise: a verdict stands if the top answer has at least this share of valid votes.
    agreement_threshold: float = 0.6
    # Pairwise: ask every pair in both orders (A/B and B/A) so that a judge's leaning to
    # one slot cancels out; false asks A/B only (half the votes, and the bias stays).
    both_orders: bool = True
    # Pointwise: a score stands if its overall (0-1) spread across votes is at most this.
    max_score_spread: float = 0.35
    # Share of a judge's votes that must parse for its verdict to count.
    min_valid_fraction: float = 0.5
    # How judges combine: mean | majority | all_agree.
    ensemble: str = "mean"
    # Judges that must remain in the ensemble (not tripped by the circuit breaker); fewer
    # stops the run with an error.
    quorum: int = 1


@dataclass
class RewardConfig:
    # Pairwise mode: a response's reward from its pair verdicts: winrate | bradley_terry.
    pairwise: str = "winrate"
    # Counters a judge's leaning to long (or short) answers: this share (0-1) of the
    # rewards' linear dependence on answer length (characters) is taken out of the training
    # rewards of each iteration. 0: off; 1: training rewards no longer correlate with length.
    length_penalty: float = 0.0


@dataclass
class ReviewConfig:
    # Verdicts below this confidence leave the training signal and go to human review.
    confidence_threshold: float = 0.3


@dataclass
class StreamConfig:
    # Candidate batches being judged at once (backpressure on the generators).
    max_batches_in_flight: int = 4


@dataclass
class TrainerConfig:
    # Ray Train workers, each holding DeepSpeed engines for the actor and the critic.
    workers: int = 1
    use_gpu: bool = False
    resources: ResourcesConfig = field(default_factory=lambda: ResourcesConfig(num_cpus=1.0))
    zero_stage: int = 0
    dtype: str = "float32"  # float32 | bfloat16
    micro_batch_size: int = 16
    # Samples per optimizer step over all workers, a multiple of micro_batch_size x workers
    # (gradients are accumulated over its micro batches); null: micro_batch_size x workers.
    mini_batch_size: int | None = None
    # Each epoch's order of the samples: false, the same order every epoch (by prompt, as
    # they came); true, prompts and each prompt's answers reshuffled every epoch with
    # run.seed (textbook PPO). false learned as much or more on 5 of 6 tasks of
    # `python -m bench learning` and reached the long-answer task's target in 3 iterations
    # against 5 (docs/learning.md).
    shuffle: bool = False
    ppo_epochs: int = 2
    # The critic's own batching (gae only), as verl's critic.ppo_mini_batch_size: samples
    # per critic optimizer step over all workers (null: mini_batch_size, or one critic
    # micro batch per worker when that is null too) and at most per critic forward (null:
    # micro_batch_size). Each epoch the critic steps after the actor, in its own shuffle.
    critic_mini_batch_size: int | None = None
    critic_micro_batch_size: int | None = None
    # Stop an iteration's epochs early once an epoch's policy-change KL (k3 per token,
    # metric `policy_kl`) is above this; null: always run ppo_epochs.
    target_kl: float | None = None
    # PPO's old log-probs: "generator" (vLLM's sampled-token log-probs: no forward pass),
    # "recompute" (a forward pass of the trainer's policy), or "auto": generator for answers
    # of the policy version the trainer holds (its sync was verified), else recompute.
    # "generator" needs generator.top_p = 1.
    old_logprobs: str = "auto"
    # Answers of an older policy (async mode) whose old log-probs are recomputed: each
    # token's loss is weighted by min(pi_old / pi_generator, cap); null: no correction.
    behaviour_is_cap: float | None = 2.0
    # torch threads per worker; null: the worker's resources.num_cpus (at least 1).
    torch_threads: int | None = None
    # Each distinct prompt of a micro batch runs once, its keys and values shared by the
    # answers to it (same log-probs and gradients; rlaif_ray/train/shared_prefix.py).
    # false: every answer runs with its whole prompt (for models whose KV cache cannot be
    # gathered by batch row).
    share_prompt_prefix: bool = True
    # Rows per forward pass without gradients (reference and recomputed old log-probs,
    # critic values before the update); null: micro_batch_size. Larger passes are cheaper
    # per row where memory allows, as verl's log_prob_micro_batch_size.
    forward_batch_size: int | None = None
    # The trainer's attention kernels (transformers' attn_implementation: sdpa, eager,
    # flash_attention_2, ..., or sdpa_fp32: sdpa computed in float32 for bfloat16 weights);
    # null: sdpa_fp32 for a bfloat16 trainer on CPU (faster there), else transformers'
    # choice (sdpa where it can).
    attn_implementation: str | None = None
    # Typical for real models; conf/default.yaml raises them for the random tiny policy.
    actor_lr: float = 1e-6
    critic_lr: float = 5e-6
    kl_coef: float = 0.01
    kl_estimator: str = "k1"  # k1 | k2 | k3
    clip_eps: float = 0.2
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    entropy_coef: float = 0.0
    whiten_advantages: bool = True
    # gae (PPO with a critic) | grpo | rloo | reinforce_pp (critic-free); see
    # rlaif_ray/train/advantages.py. grpo divides by its group's reward std when true.
    advantage_estimator: str = "gae"
    grpo_normalize_std: bool = True
    # gae's critic: "separate" (a backbone of its own, its own optimizer, critic_lr and
    # batching) or "shared" (a value head on the policy's trunk, trained in the policy's
    # step with the value loss weighted by vf_coef: one forward and backward for both).
    critic: str = "separate"
    vf_coef: float = 0.1
    max_grad_norm: float = 1.0
    # Checkpoints kept under run.dir/checkpoints (committed ones; see docs/training.md).
    keep_checkpoints: int = 2
    # Checkpoint every this many iterations (the last iteration always); a resume goes
    # back to the newest checkpoint and runs the iterations after it again.
    checkpoint_every: int = 1
    # How long the driver waits for one training step before failing.
    step_timeout_s: float = 1800.0
    # Worker failures Ray Train restores from the newest checkpoint before the run fails
    # (its FailureConfig.max_failures; -1: without limit).
    max_failures: int = 2
    # How often Ray Train's controller polls the workers (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S,
    # which wins when set; Ray's default is 2 s). A worker's report of an iteration waits
    # for the poll that takes the one before it, so this bounds that wait.
    health_check_interval_s: float = 0.2


@dataclass
class CurriculumConfig:
    # Confidence floor of training items: starts high (confident items first) and falls
    # linearly to `end_confidence` over `anneal_iterations` iterations.
    start_confidence: float = 0.6
    end_confidence: float = 0.0
    anneal_iterations: int = 3


@dataclass
class RayConfig:
    # null: start a local Ray (or reuse the one this process already joined).
    address: str | None = None
    namespace: str = "rlaif"
    # Local Ray only: CPUs to offer and extra custom resources (fake GPU pools).
    num_cpus: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    # How long a pool may wait for resources that exist but are busy.
    pool_timeout_s: float = 60.0
    # Local Ray only: the dashboard on 127.0.0.1 (actors, logs, Train view, metrics).
    dashboard: bool = True
    # null: 8265, or the next free port when another Ray holds it (its URL is printed).
    dashboard_port: int | None = None
    # Local Ray only: the Prometheus metrics endpoint's port (null: Ray picks one).
    metrics_export_port: int | None = None
    # Stream every Ray worker's output (vLLM engines, Ray Train) to this console; otherwise
    # it stays in Ray's log files (the dashboard's Logs view). `rlaif-ray run -v` sets it.
    verbose: bool = False


@dataclass
class RLAIFConfig:
    run: RunConfig = field(default_factory=RunConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    rubric: RubricConfig = field(default_factory=RubricConfig)
    judges: list[JudgeConfig] = field(default_factory=list)
    voting: VotingConfig = field(default_factory=VotingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # Where tiny models are built (null: $RLAIF_RAY_CACHE or the user cache dir).
    cache_dir: str | None = None


_DTYPES = ("float32", "bfloat16", "float16", "auto")
_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _schema() -> DictConfig:
    return OmegaConf.structured(RLAIFConfig)


def _closest_key(cfg: DictConfig, full_key: str) -> str | None:
    """Best guess at the valid key a typo'd `full_key` meant."""
    parent_path, _, leaf = full_key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
    if not isinstance(parent, DictConfig):
        return None
    match = difflib.get_close_matches(leaf, [str(k) for k in parent], n=1, cutoff=0.5)
    if not match:
        return None
    return f"{parent_path}.{match[0]}" if parent_path else match[0]


def _config_error(err: OmegaConfBaseException, cfg: DictConfig, source: str) -> ConfigError:
    """A ConfigError naming the key (and, for a typo, the closest valid key)."""
    key = getattr(err, "full_key", None) or str(getattr(err, "key", "") or "")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        hint = _closest_key(cfg, key)
        suggestion = f"; did you mean '{hint}'?" if hint else ""
        return ConfigError(f"{source}: unknown config key '{key}'{suggestion}")
    if isinstance(err, ValidationError):
        return ConfigError(f"{source}: key '{key}' {err.msg.splitlines()[0]}")
    return ConfigError(f"{source}: {str(err).splitlines()[0]}")


def _merge(base: DictConfig, update: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as err:
        raise _config_error(err, base, source) from None


def _check_list_indices(cfg: DictConfig, key: str) -> None:
    """Refuse an override into a list entry that does not exist, naming the list's length
    (OmegaConf would try to create the entry and fail with an internal message)."""
    node: Any = cfg
    walked: list[str] = []
    for part in re.sub(r"\[(\d+)\]", r".\1", key).split("."):
        if isinstance(node, ListConfig):
            name = ".".join(walked)
            if not part.isdigit() or int(part) >= len(node):
                count = len(node)
                indices = f" (indices 0-{count - 1})" if count else ""
                raise ConfigError(f"command-line override '{key}': list '{name}' has "
                                  f"{count} {'entry' if count == 1 else 'entries'}{indices}; "
                                  f"'{part}' is not one of them")
            node = node[int(part)]
        elif isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            return  # a new or unknown key: OmegaConf names it
        walked.append(part)


def _apply_override(cfg: DictConfig, item: str) -> None:
    """Apply one `key=value` (dotted key, list items as `judges.0.weight` or
    `judges[0].weight`; value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        value = OmegaConf.from_dotlist([f"value={raw}"])["value"]
    except OmegaConfBaseException as err:
        raise ConfigError(f"override '{item}': cannot parse value: {err}") from None
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    _check_list_indices(cfg, key)
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException as err:
        raise _config_error(err, cfg, "command-line override") from None
    except TypeError as err:
        raise ConfigError(f"command-line override '{key}': {err}") from None


def default_config_path() -> Path:
    """The embedded default config shipped in the package (`conf/default.yaml` links to
    it): tiny local models, local Ray."""
    return Path(str(resources.files("rlaif_ray.resources").joinpath("default.yaml")))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Schema <- YAML file <- `key=value` overrides, then `validate`. Returns a typed DictConfig."""
    cfg = _schema()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as err:  # yaml errors carry line/column in their text
            raise ConfigError(f"{path}: cannot parse YAML: {err}") from None
        cfg = _merge(cfg, file_cfg, str(path))
    for item in overrides or []:
        _apply_override(cfg, item)
    validate(cfg)
    return cfg


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
    _require(gen.temperature >= 0, "generator.temperature", "must be >= 0", gen.temperature)
    _require(gen.temperature > 0 or gen.samples_per_prompt == 1, "generator.temperature",
             "must be > 0 when generator.samples_per_prompt > 1 (greedy decoding gives one "
             "answer)", gen.temperature)
    _require(0 < gen.top_p <= 1, "generator.top_p", "must be in (0, 1]", gen.top_p)
    _require(gen.max_model_len > gen.max_tokens, "generator.max_model_len",
             "must exceed generator.max_tokens", gen.max_model_len)
    _require(gen.kv_cache_gib > 0, "generator.kv_cache_gib", "must be > 0", gen.kv_cache_gib)
    _require(gen.sync_timeout_s > 0, "generator.sync_timeout_s", "must be > 0",
             gen.sync_timeout_s)
    _require(gen.sync_transport in ("object_store", "collective"), "generator.sync_transport",
             "must be 'object_store' or 'collective'", gen.sync_transport)
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


_JUDGE_KINDS = ("llm", "http", "rule")


def _one_of(registry) -> str:
    """The error text for a name that is not in `registry`: the valid ones, in order."""
    return f"must be one of {', '.join(registry)}"


def _validate_judging(cfg: DictConfig) -> None:
    rubric, voting = cfg.rubric, cfg.voting
    _require(rubric.mode in ("pointwise", "pairwise"), "rubric.mode",
             "must be 'pointwise' or 'pairwise'", rubric.mode)
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
    _require(cfg.reward.pairwise in PAIRWISE_REWARDS, "reward.pairwise",
             _one_of(PAIRWISE_REWARDS), cfg.reward.pairwise)
    _require(0 <= cfg.reward.length_penalty <= 1, "reward.length_penalty",
             "must be in [0, 1]", cfg.reward.length_penalty)
    _require(0 <= cfg.review.confidence_threshold <= 1, "review.confidence_threshold",
             "must be in [0, 1]", cfg.review.confidence_threshold)
    _require(cfg.stream.max_batches_in_flight >= 1, "stream.max_batches_in_flight",
             "must be >= 1", cfg.stream.max_batches_in_flight)
    names = [j.name for j in cfg.judges]
    for i, judge in enumerate(cfg.judges):
        key = f"judges[{i}]"
        _require(names.count(judge.name) == 1, f"{key}.name", "must be unique", judge.name)
        _require(judge.kind in _JUDGE_KINDS, f"{key}.kind", f"must be one of {_JUDGE_KINDS}",
                 judge.kind)
        _require(judge.weight > 0, f"{key}.weight", "must be > 0", judge.weight)
        for field_name in ("replicas", "batch_size", "max_inflight_per_replica",
                           "concurrency", "max_tokens", "circuit_breaker_failures"):
            _require(judge[field_name] >= 1, f"{key}.{field_name}", "must be >= 1",
                     judge[field_name])
        _require(judge.max_retries >= 0, f"{key}.max_retries", "must be >= 0",
                 judge.max_retries)
        _require(judge.temperature >= 0, f"{key}.temperature", "must be >= 0",
                 judge.temperature)
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
    _validate_resources(tr.resources, "trainer.resources")
    for key in ("start_confidence", "end_confidence"):
        _require(0 <= cur[key] <= 1, f"curriculum.{key}", "must be in [0, 1]", cur[key])
    _require(cur.anneal_iterations >= 1, "curriculum.anneal_iterations", "must be >= 1",
             cur.anneal_iterations)


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


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what a run directory records)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
