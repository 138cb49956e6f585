"""Training samples from an iteration's candidates and verdicts, chosen by the curriculum,
and their collation into padded `[batch, T]` tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlaif_ray.judge.review import standing
from rlaif_ray.judge.reward import remove_length_bias


def confidence_floor(iteration: int, curriculum: Any) -> float:
    """The curriculum's confidence floor at `iteration`: linear from start to end."""
    progress = min(iteration / curriculum.anneal_iterations, 1.0)
    return curriculum.start_confidence + progress * (curriculum.end_confidence -
                                                     curriculum.start_confidence)


def rewarded_verdicts(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response verdicts that stand with a reward: what training and the reward metrics
    use."""
    return [v for v in verdicts
            if v["item_kind"] == "response" and standing(v) and v["reward"] is not None]


def training_samples(candidates: list[dict[str, Any]], verdicts: list[dict[str, Any]],
                     floor: float, length_penalty: float = 0.0) -> list[dict[str, Any]]:
    """Responses whose verdict stands, at or above the confidence `floor` (if none is, all
    that stand: the most confident data available), most confident first. With a
    `length_penalty` (0-1), that share of the rewards' linear dependence on answer length
    (characters) is taken out first (`remove_length_bias`)."""
    by_id = {c["response_id"]: c for c in candidates}
    rewarded = {v["response_id"]: v for v in rewarded_verdicts(verdicts)
                if by_id[v["response_id"]]["response_token_ids"]}
    rewards = dict(zip(rewarded, remove_length_bias(
        [float(v["reward"]) for v in rewarded.values()],
        [len(by_id[r]["response"]) for r in rewarded], length_penalty), strict=True))
    chosen = [v for v in rewarded.values() if v["confidence"] >= floor] or list(
        rewarded.values())
    chosen.sort(key=lambda v: (-v["confidence"], v["response_id"]))
    return [{"response_id": v["response_id"], "prompt_id": v["prompt_id"],
             "prompt_token_ids": list(by_id[v["response_id"]]["prompt_token_ids"]),
             "response_token_ids": list(by_id[v["response_id"]]["response_token_ids"]),
             "logprobs": list(by_id[v["response_id"]]["logprobs"]),
             "reward": rewards[v["response_id"]], "confidence": float(v["confidence"]),
             "policy_version": by_id[v["response_id"]]["policy_version"]}
            for v in chosen]


@dataclass
class Batch:
    """Padded sequences; position t of the `[B, T-1]` tensors scores token t+1."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T-1], 1 where token t+1 is a response token
    gen_logprobs: torch.Tensor  # [B, T-1], the generators' log-probs on response tokens
    rewards: torch.Tensor  # [B]
    advantages: torch.Tensor  # [B], group-baseline estimators' advantage per answer (else 0)

    def select(self, rows: torch.Tensor) -> Batch:
        """The batch of `rows`, cut to their longest sequence (padding is on the right)."""
        length = int(self.attention_mask[rows].sum(-1).max())
        return Batch(self.input_ids[rows, :length], self.attention_mask[rows, :length],
                     self.mask[rows, :length - 1], self.gen_logprobs[rows, :length - 1],
                     self.rewards[rows], self.advantages[rows])

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.mask,
                                              self.gen_logprobs, self.rewards,
                                              self.advantages)))


def collate(samples: list[dict[str, Any]], pad_id: int) -> Batch:
    """Right-padded batch of prompt + response sequences."""
    length = max(len(s["prompt_token_ids"]) + len(s["response_token_ids"]) for s in samples)
    size = len(samples)
    input_ids = torch.full((size, length), pad_id, dtype=torch.long)
    attention = torch.zeros((size, length), dtype=torch.long)
    mask = torch.zeros((size, length - 1))
    gen_logprobs = torch.zeros((size, length - 1))
    for i, s in enumerate(samples):
        prompt, response = s["prompt_token_ids"], s["response_token_ids"]
        seq = prompt + response
        input_ids[i, :len(seq)] = torch.tensor(seq)
        attention[i, :len(seq)] = 1
        start, end = len(prompt) - 1, len(seq) - 1
        mask[i, start:end] = 1
        gen_logprobs[i, start:end] = torch.tensor(s["logprobs"], dtype=torch.float32)
    rewards = torch.tensor([s["reward"] for s in samples], dtype=torch.float32)
    advantages = torch.tensor([s.get("advantage", 0.0) for s in samples], dtype=torch.float32)
    return Batch(input_ids, attention, mask, gen_logprobs, rewards, advantages)
