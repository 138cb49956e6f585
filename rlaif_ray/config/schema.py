"""The config schema: every key a user can set, as OmegaConf structured dataclasses with
its type, default and a comment (`rlaif-ray config` prints them resolved). `load_config`
(`rlaif_ray.config`) merges YAML and overrides onto it; `rlaif_ray.config.checks` checks
ranges and names."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.replica_resources import ResourcesConfig
from rlaif_ray.train.settings import TrainerConfig


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
    # Where each iteration's metrics go beside metrics.jsonl: tensorboard | mlflow | wandb
    # (settings under `tracking`).
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])


@dataclass
class MlflowConfig:
    # The tracking URI; MLFLOW_TRACKING_URI wins when set (null: MLflow's default ./mlruns).
    uri: str | None = None
    experiment: str = "rlaif-ray"


@dataclass
class WandbConfig:
    # null: WANDB_PROJECT / WANDB_ENTITY from the environment (the key: WANDB_API_KEY only).
    project: str | None = "rlaif-ray"
    entity: str | None = None


@dataclass
class TrackingConfig:
    # A tracker in run.trackers that cannot be reached stops the run before Ray starts;
    # false: it is left out with a warning.
    required: bool = True
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


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
class PriceConfig:
    """What a judge's tokens cost, per million (any currency; USD in the docs)."""

    input: float = 0.0
    output: float = 0.0


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
    # Price per million prompt (input) and completion (output) tokens; null: not priced
    # (tokens are still counted). Gives judge_cost and the cost per kept verdict.
    price_per_mtok: PriceConfig | None = None


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
    # How judges combine: mean | majority | all_agree | calibrated (the mean, each judge's
    # weight times its agreement with people's verdicts in run.dir so far).
    ensemble: str = "mean"
    # calibrated: the agreement a judge is assumed to have before people's verdicts, held
    # as if this many items had shown it (more items: the measured rate takes over).
    calibration_prior: float = 0.5
    calibration_prior_items: int = 10
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
    # offline: the queue is written at the end of a run (and by `rlaif-ray review export`);
    # live: after every iteration's rollout too, and people's verdicts that arrive before
    # an update join it (`rlaif_ray.review.live`).
    mode: str = "offline"
    # Live mode: the run serves the review page itself on 127.0.0.1 (a free port) and
    # prints its address; false: serve it with `rlaif-ray review serve RUN_DIR` instead.
    serve: bool = True


@dataclass
class StreamConfig:
    # Candidate batches being judged at once (backpressure on the generators); null: enough
    # to give every judge replica's request slots work, and at least 4
    # (`rollout.stream.in_flight_bound`), so a larger judge pool is used whole.
    max_batches_in_flight: int | None = None


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
class CurriculumConfig:
    # Confidence floor of training items: starts high (confident items first) and falls
    # linearly to `end_confidence` over `anneal_iterations` iterations.
    start_confidence: float = 0.6
    end_confidence: float = 0.0
    anneal_iterations: int = 3


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
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # Where tiny models are built (null: $RLAIF_RAY_CACHE or the user cache dir).
    cache_dir: str | None = None


def schema() -> DictConfig:
    """A fresh typed config holding every default."""
    return OmegaConf.structured(RLAIFConfig)
