"""The critic: the policy's backbone with a scalar value head."""

from __future__ import annotations

import torch
from torch import nn


class ValueModel(nn.Module):
    """Backbone (the causal LM without its LM head) + a linear value head per position."""

    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        from transformers import AutoModel

        self.backbone = AutoModel.from_pretrained(model_path, torch_dtype=dtype)
        self.value_head = nn.Linear(self.backbone.config.hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return self.value_head(hidden.last_hidden_state).squeeze(-1).float()
