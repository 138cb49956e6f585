"""The critic: the policy's backbone with a scalar value head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class ValueOutput:
    """Per-position values `[B, T]`, and the backbone's keys and values when asked for
    (`use_cache`)."""

    values: torch.Tensor
    past_key_values: Any = None


class ValueModel(nn.Module):
    """Backbone (the causal LM without its LM head) + a linear value head per position."""

    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32,
                 attn_implementation: str | None = None) -> None:
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        # The backbone of a causal LM checkpoint leaves its lm_head unused: transformers
        # reports that as an UNEXPECTED key, which is expected here.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            self.backbone = AutoModel.from_pretrained(
                model_path, dtype=dtype, attn_implementation=attn_implementation)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.value_head = nn.Linear(self.backbone.config.hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                use_cache: bool = False, logits_to_keep: int = 0) -> ValueOutput:
        """Values at every position, or at the last `logits_to_keep` (as a causal LM's
        logits)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, past_key_values=past_key_values,
                               use_cache=use_cache)
        states = hidden.last_hidden_state
        if logits_to_keep:
            states = states[:, -logits_to_keep:]
        return ValueOutput(self.value_head(states).squeeze(-1).float(),
                           hidden.past_key_values if use_cache else None)
