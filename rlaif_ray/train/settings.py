"""The trainer's settings: config section `trainer` (PPO, DeepSpeed, LoRA) as the typed
object every trainer worker reads (`settings_of`), part of `rlaif_ray.config.schema`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlaif_ray.lora import ATTENTION_MLP
from rlaif_ray.replica_resources import ResourcesConfig


@dataclass
class LoraConfig:
    # Low-rank adapters (peft) on a frozen base: 0 trains every weight (the default).
    # With a rank, only the adapter trains, and only the adapter syncs to the generators,
    # which serve it with vLLM's LoRA support (docs/training.md "LoRA").
    rank: int = 0
    alpha: float = 16.0  # the adapter's update is scaled by alpha / rank
    dropout: float = 0.0
    # The base modules adapted: the attention and MLP projections (Llama, Qwen2 names).
    target_modules: list[str] = field(default_factory=lambda: list(ATTENTION_MLP))


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
    lora: LoraConfig = field(default_factory=LoraConfig)


def settings_of(section: Any) -> TrainerConfig:
    """Config section `trainer` (a DictConfig of the schema) as a TrainerConfig instance."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_object(section)
    if not isinstance(settings, TrainerConfig):
        raise TypeError(f"not a trainer section: {type(settings).__name__}")
    return settings
