"""DeepSpeed engines for the actor, critic and frozen reference, from `trainer.*` config."""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

import torch

from rlaif_ray.lora import LoraSpec, adapter_state, is_adapted, with_adapter
from rlaif_ray.train.advantages import critic_kind
from rlaif_ray.train.attention import attention_kernel
from rlaif_ray.train.minibatch import mini_batch_size
from rlaif_ray.train.policy_value import policy_of, policy_state
from rlaif_ray.train.settings import TrainerConfig

# DeepSpeed's shared-memory all-reduce kernel, a C++ op it compiles on a machine's first
# `init_distributed` on CPU (80 s on 2 slow cores): used only by its inference all-reduce.
INFERENCE_ONLY_OPS = ("deepspeed_shm_comm",)


def import_deepspeed() -> ModuleType:
    """`deepspeed`, imported without mlflow. DeepSpeed's autotuner (its launcher's
    `--autotuning`, which no trainer here runs) imports mlflow at DeepSpeed's own import
    wherever mlflow is installed: over half a second of every trainer worker's start-up
    for a package no worker uses (the driver logs to MLflow, `rlaif_ray.tracking`)."""
    if "deepspeed" not in sys.modules and "mlflow" not in sys.modules:
        sys.modules["mlflow"] = None  # type: ignore[assignment]  # its `import` then fails
        try:
            import deepspeed
        finally:
            sys.modules.pop("mlflow", None)
    import deepspeed

    return deepspeed


def init_distributed(use_gpu: bool) -> None:
    """`deepspeed.init_distributed` over NCCL (GPU) or gloo (CPU), without building the ops
    only DeepSpeed inference uses: training all-reduces through torch.distributed."""
    deepspeed = import_deepspeed()
    compatible = deepspeed.ops.__compatible_ops__  # DeepSpeed's own table, read on init
    for name in INFERENCE_ONLY_OPS:
        compatible[name] = False
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo")


def ds_config(trainer: TrainerConfig, lr: float, world_size: int,
              with_optimizer: bool = True) -> dict[str, Any]:
    """DeepSpeed config: ZeRO stage, dtype, micro/mini batch, torch's fused AdamW (no op
    build)."""
    stage = trainer.zero_stage if with_optimizer else (3 if trainer.zero_stage == 3
                                                          else 0)
    micro = trainer.micro_batch_size
    mini = mini_batch_size(trainer, world_size)
    config: dict[str, Any] = {
        # Nominal: the PPO update sets each accumulation boundary itself (a mini batch at
        # the end of an epoch may be short; see rlaif_ray.train.ppo_update).
        "train_micro_batch_size_per_gpu": micro,
        "train_batch_size": mini,
        "gradient_accumulation_steps": mini // (micro * world_size),
        "gradient_clipping": trainer.max_grad_norm,
        "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 0},
        "bf16": {"enabled": trainer.dtype == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if with_optimizer:
        # torch's fused AdamW: one pass over each tensor (4.3x faster than foreach on 100M
        # CPU parameters; docs/performance.md), on CPU and GPU alike.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": lr, "torch_adam": True,
                                                           "fused": True,
                                                           "weight_decay": 0.0}}
    return config


def safe_checkpoint_engine(config):
    """DeepSpeed's torch checkpoint engine, loading with `torch.load(weights_only=True)`
    (DeepSpeed's own loader uses weights_only=False); only the two DeepSpeed types its
    optimizer states hold are allowed besides tensors and containers."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import (
        TorchCheckpointEngine,
    )
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    class SafeTorchCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            with torch.serialization.safe_globals([ZeroStageEnum, LossScaler]):
                return torch.load(path, map_location=map_location, weights_only=True)

    return SafeTorchCheckpointEngine(config)


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients of `parameters` so that their joint L2 norm is at most
    `max_norm`, by DeepSpeed's factor `max_norm / (norm + 1e-6)` when it is below 1; returns
    the norm. One fused norm over every gradient, and no multiply when nothing is clipped.

    DeepSpeed's fp32 clip (`deepspeed.runtime.utils.clip_grad_norm_`) takes a norm and a
    multiply per tensor in Python and all-reduces the norm: 5.9% of a `tiny` update (py-spy),
    1.7 ms a step. With ZeRO-0 the gradients are already reduced, equal on every rank, so
    each rank gets the same norm without a collective."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, foreach=True)
    factor = max_norm / (float(total) + 1e-6)
    if factor < 1.0:
        torch._foreach_mul_(grads, factor)
    return total


def initialize(model: torch.nn.Module, trainer: TrainerConfig, lr: float, world_size: int):
    """A training engine for `model`, restoring checkpoints with safe loading."""
    deepspeed = import_deepspeed()
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable,
                                      config=ds_config(trainer, lr, world_size))
    engine.checkpoint_engine = safe_checkpoint_engine(engine._config)
    if world_size == 1 and trainer.zero_stage == 0:
        # Nothing to reduce with one worker; DeepSpeed would still flatten and copy every
        # gradient through its all-reduce buckets each step (6% of a step; bench/ppo_step).
        engine.enable_backward_allreduce = False
    # DeepSpeed calls this only for fp32 without ZeRO (its bf16 and ZeRO optimizers clip
    # inside their own step) and with a max norm above 0.
    engine.clip_fp32_gradients = functools.partial(clip_gradients, trainable,
                                                   trainer.max_grad_norm)
    return engine


def frozen(model: torch.nn.Module, trainer: TrainerConfig, world_size: int):
    """The frozen reference: a ZeRO-3 inference engine when training at stage 3 (it shards
    too), else the plain module (ZeRO 1/2 need an optimizer)."""
    model.eval().requires_grad_(False)
    if trainer.zero_stage != 3:
        return model
    config = ds_config(trainer, 0.0, world_size, with_optimizer=False)
    engine, *_ = import_deepspeed().initialize(model=model, config=config)
    engine.eval()
    return engine


def full_state_dict(engine, zero_stage: int) -> dict[str, torch.Tensor] | None:
    """What the generators load, on rank 0: the full policy weights named as in its model
    directory, or with LoRA the adapter's tensors named as in peft's adapter file
    (gathered under ZeRO-3; every rank must call)."""
    if zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict()
    if engine.global_rank != 0:
        return None
    state = policy_state(engine.module, state)
    policy = policy_of(engine.module)
    if is_adapted(policy):
        state = adapter_state(policy, state)
    return {k: v.detach().to("cpu").clone() for k, v in state.items()}


def load_kwargs(tr: TrainerConfig) -> dict[str, Any]:
    """`from_pretrained` arguments of the trainer's models: `trainer.dtype` and the
    attention kernel (`rlaif_ray.train.attention.attention_kernel`)."""
    return {"dtype": torch.bfloat16 if tr.dtype == "bfloat16" else torch.float32,
            "attn_implementation": attention_kernel(tr)}


def build_engines(tr: TrainerConfig, path: str, world_size: int, device: torch.device):
    """(actor, critic, reference) for the model at `path`: the actor's engine (the policy,
    with its value head when `trainer.critic` is shared), the separate critic's engine
    (None without one) and the frozen reference, on `device`."""
    from transformers import AutoModelForCausalLM

    from rlaif_ray.train.critic import ValueModel
    from rlaif_ray.train.policy_value import PolicyValueModel

    load = load_kwargs(tr)
    policy = with_adapter(AutoModelForCausalLM.from_pretrained(path, **load),
                          LoraSpec.from_section(tr.lora))
    kind = critic_kind(tr)
    actor = initialize(PolicyValueModel(policy) if kind == "shared" else policy, tr,
                       tr.actor_lr, world_size)
    critic = (initialize(ValueModel(path, **load), tr, tr.critic_lr, world_size)
              if kind == "separate" else None)
    ref = frozen(AutoModelForCausalLM.from_pretrained(path, **load), tr, world_size)
    if isinstance(ref, torch.nn.Module) and not hasattr(ref, "global_rank"):
        ref.to(device)
    return actor, critic, ref
