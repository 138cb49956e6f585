"""The trainer's attention kernel. `sdpa_fp32` is PyTorch's scaled-dot-product attention
run in float32 for a model whose weights are bfloat16: query, key and value are upcast, the
output cast back. On CPU, PyTorch's bfloat16 attention backward takes twice the float32
one's time, so a bfloat16 trainer on CPU is faster with it (the 100M bench's PPO update by
6-10%, docs/performance.md), and its attention scores are no less exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from rlaif_ray.train.settings import TrainerConfig

SDPA_FP32 = "sdpa_fp32"


def sdpa_fp32_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, attention_mask: torch.Tensor | None,
                        **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention on float32 copies of `query`, `key` and `value`; the
    output in `query`'s dtype."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    mask = attention_mask if attention_mask is None or attention_mask.dtype == torch.bool \
        else attention_mask.float()
    output, weights = sdpa_attention_forward(module, query.float(), key.float(),
                                             value.float(), mask, **kwargs)
    return output.to(query.dtype), weights


def register() -> None:
    """Make `sdpa_fp32` a name transformers' `attn_implementation` accepts (per process),
    with sdpa's masks: transformers builds a model's padding and causal masks by its
    attention's name, and a name it does not know gets none."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SDPA_FP32, sdpa_fp32_attention)
    AttentionMaskInterface.register(SDPA_FP32, sdpa_mask)


def attention_kernel(tr: TrainerConfig) -> str | None:
    """`trainer.attn_implementation`, or where it is null: `sdpa_fp32` for a bfloat16
    trainer on CPU, else None (transformers' choice). Registers `sdpa_fp32` when chosen."""
    kernel = tr.attn_implementation
    if kernel is None and tr.dtype == "bfloat16" and not tr.use_gpu:
        kernel = SDPA_FP32
    if kernel == SDPA_FP32:
        register()
    return kernel
