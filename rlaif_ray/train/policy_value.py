"""The policy with a value head on its own trunk (`trainer.critic: shared`), as TRL's
`AutoModelForCausalLMWithValueHead`: one forward gives the answer logits and the values, and
one backward trains both (the value loss weighted by `trainer.vf_coef`), instead of a second
backbone with its own optimizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PREFIX = "policy."


@dataclass
class PolicyValueOutput:
    """A causal LM's logits (its last `logits_to_keep` positions), the values at the same
    positions `[B, T]`, and the keys and values when asked for (`use_cache`)."""

    logits: torch.Tensor
    values: torch.Tensor
    past_key_values: Any = None


class PolicyValueModel(nn.Module):
    """A causal LM (`policy`) and a linear value head on its last hidden states, zero at
    the start (so the value loss moves the trunk only as the head learns)."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(policy.config.hidden_size, 1, dtype=policy.dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                use_cache: bool = False, logits_to_keep: int = 0) -> PolicyValueOutput:
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, past_key_values=past_key_values,
                          use_cache=use_cache, logits_to_keep=logits_to_keep,
                          output_hidden_states=True)
        hidden = out.hidden_states[-1]  # after the final norm: what the LM head reads
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return PolicyValueOutput(out.logits, self.value_head(hidden).squeeze(-1).float(),
                                 out.past_key_values if use_cache else None)


def policy_of(module: nn.Module) -> nn.Module:
    """The causal LM in `module` (a PolicyValueModel's policy, else `module` itself)."""
    return module.policy if isinstance(module, PolicyValueModel) else module


def policy_state(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The policy's own weights, named as in its model directory, from `module`'s state
    dict: what the generators load and a checkpoint's policy file holds (a
    PolicyValueModel's value head stays with the trainer)."""
    if not isinstance(module, PolicyValueModel):
        return state
    return {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
