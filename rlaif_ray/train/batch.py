"""Training samples collated into padded, answer-aligned `[batch, T]` tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlaif_ray.train.samples import TrainingSample


@dataclass
class Batch:
    """Prompts left-padded to `prompt_width` columns, each answer right after its prompt and
    right-padded: every answer starts at the same column, so a model scores the answers with
    its last logits only (`logits_to_keep`). Per-token tensors are `[B, R]`, answer-aligned:
    position r is answer token r."""

    input_ids: torch.Tensor  # [B, P + R]
    attention_mask: torch.Tensor  # [B, P + R]
    position_ids: torch.Tensor  # [B, P + R], from 0 at each row's first real token
    mask: torch.Tensor  # [B, R], 1 on answer tokens
    gen_logprobs: torch.Tensor  # [B, R], the generators' log-probs of the answer tokens
    rewards: torch.Tensor  # [B]
    advantages: torch.Tensor  # [B], group-baseline estimators' advantage per answer (else 0)
    prompt_width: int

    @property
    def answer_tokens(self) -> torch.Tensor:
        """`[B, R]`: the answer tokens (padding where `mask` is 0)."""
        return self.input_ids[:, self.prompt_width:]

    def select(self, rows: torch.Tensor) -> Batch:
        """The batch of `rows`, cut to their longest prompt and longest answer."""
        width = self.prompt_width
        prompt = int(self.attention_mask[rows, :width].sum(-1).max())
        answer = int(self.mask[rows].sum(-1).max())
        columns = slice(width - prompt, width + answer)
        return Batch(self.input_ids[rows, columns], self.attention_mask[rows, columns],
                     self.position_ids[rows, columns], self.mask[rows, :answer],
                     self.gen_logprobs[rows, :answer], self.rewards[rows],
                     self.advantages[rows], prompt)

    def to(self, device: torch.device) -> Batch:
        """The batch with every tensor on `device`."""
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.position_ids.to(device), self.mask.to(device),
                     self.gen_logprobs.to(device), self.rewards.to(device),
                     self.advantages.to(device), self.prompt_width)


def collate(samples: list[TrainingSample], pad_id: int) -> Batch:
    """Prompts left-padded, answers right-padded, in one batch (see `Batch`)."""
    width = max(len(s.prompt_token_ids) for s in samples)
    answer = max(len(s.response_token_ids) for s in samples)
    size = len(samples)
    input_ids = torch.full((size, width + answer), pad_id, dtype=torch.long)
    attention = torch.zeros((size, width + answer), dtype=torch.long)
    mask = torch.zeros((size, answer))
    gen_logprobs = torch.zeros((size, answer))
    for i, s in enumerate(samples):
        prompt, response = s.prompt_token_ids, s.response_token_ids
        columns = slice(width - len(prompt), width + len(response))
        input_ids[i, columns] = torch.tensor(prompt + response)
        attention[i, columns] = 1
        mask[i, :len(response)] = 1
        gen_logprobs[i, :len(response)] = torch.tensor(s.logprobs, dtype=torch.float32)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
    advantages = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
    return Batch(input_ids, attention, positions, mask, gen_logprobs, rewards, advantages,
                 width)
