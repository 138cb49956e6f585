"""Sync verification: what the sender says the new weights are. Every generator checks
the tensors it loaded against the sender's checksums (exact, see `rlaif_ray.sync.digest`),
then scores a fixed token sequence whose log-probs must match the sender's numbers (the
semantic check: the engine computes with what it loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlaif_ray.errors import WeightSyncError
from rlaif_ray.lora import LoraSpec, with_adapter
from rlaif_ray.sync.digest import state_digests

if TYPE_CHECKING:
    import torch

PROBE_TEXT = "The careful judge checks the facts, follows the instructions and answers plainly."


@dataclass
class SyncProbe:
    """Expected log-probs of `token_ids[1:]` under the new weights, the accepted gap, and
    the CRC-32 of every tensor sent (None: no exact check)."""

    token_ids: list[int]
    logprobs: list[float]
    tolerance: float
    digests: dict[str, int] | None = None


# The probe gap accepted when `generator.sync_probe_tolerance` is null: float32 on both sides
# differs by kernel rounding (below 1e-3 in the tests); 16-bit kernels of two engines round
# apart by more (0.052 on one token of the 100M bench model, bfloat16 on both sides).
FLOAT32_TOLERANCE = 0.05
HALF_TOLERANCE = 0.25


def probe_tolerance(generator: Any, sender_dtype: str) -> float:
    """The accepted probe gap for generators of config section `generator` loading weights
    from a sender computing in `sender_dtype`: `generator.sync_probe_tolerance`, or (null)
    by the two dtypes."""
    if generator.sync_probe_tolerance is not None:
        return generator.sync_probe_tolerance
    return FLOAT32_TOLERANCE if generator.dtype == sender_dtype == "float32" else HALF_TOLERANCE


def probe_token_ids(tokenizer) -> list[int]:
    """The fixed probe sequence in a model's vocabulary."""
    return tokenizer.encode(PROBE_TEXT, add_special_tokens=False)


def token_logprobs(model: torch.nn.Module, token_ids: list[int]) -> list[float]:
    """log p(token_i | tokens_<i) for i >= 1 under a Hugging Face causal LM."""
    import torch

    with torch.no_grad():
        ids = torch.tensor([token_ids], device=next(model.parameters()).device)
        logits = model(input_ids=ids).logits.float()
        logp = torch.log_softmax(logits[0, :-1], dim=-1)
        return logp.gather(-1, ids[0, 1:, None]).squeeze(-1).tolist()


def reference_probe(model_dir: str, state_dict: dict[str, torch.Tensor],
                    token_ids: list[int], tolerance: float,
                    lora: LoraSpec | None = None) -> SyncProbe:
    """The sender-side probe for `state_dict`, computed with the Hugging Face architecture in
    `model_dir` (used when the caller, e.g. a test or the CLI, holds no model of its own);
    with an enabled `lora`, `state_dict` is that adapter's, on the base weights there."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if lora is not None and lora.enabled:
        from peft import set_peft_model_state_dict

        model = with_adapter(AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32), lora)
        set_peft_model_state_dict(model, {k: v.float() for k, v in state_dict.items()})
    else:
        config = AutoConfig.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
        model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    model.eval()
    return SyncProbe(token_ids, token_logprobs(model, token_ids), tolerance,
                     state_digests(state_dict))


def max_gap(expected: list[float], observed: list[float]) -> float:
    """Largest absolute difference between two log-prob sequences of equal length."""
    if len(expected) != len(observed):
        raise WeightSyncError(f"probe length mismatch: expected {len(expected)}, "
                              f"got {len(observed)}")
    return max((abs(a - b) for a, b in zip(expected, observed, strict=True)), default=0.0)
