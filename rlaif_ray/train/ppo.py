"""PPO math in pure torch, usable without Ray or DeepSpeed.

Tensors are `[batch, T]`; `mask` is 1 on response tokens and 0 elsewhere (prompt, padding).
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked positions; masked-out positions are left as 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens) under `logits` (same `[batch, T]` alignment: logits[:, t] scores
    tokens[:, t])."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the categorical distribution given by `logits`."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def shaped_rewards(kl: torch.Tensor, reward: torch.Tensor, mask: torch.Tensor,
                   kl_coef: float) -> torch.Tensor:
    """Per-token rewards: -kl_coef * KL on every response token, plus the judge's `reward`
    (shape `[batch]`) on each sequence's last response token."""
    rewards = -kl_coef * kl * mask
    last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & (mask > 0)
    return rewards + last * reward.unsqueeze(-1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t, where V_{t+1} is the value at the next response
    token (0 after the last one); A_t = delta_t + gamma * lam * A_{t+1}. Returns
    (advantages, returns = advantages + values), both zero outside `mask`."""
    rewards, values, mask = rewards.float(), values.float(), mask.float()
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = advantage * m
        # Positions outside the mask pass the next response token's value/advantage through.
        next_value = m * values[:, t] + (1 - m) * next_value
        next_advantage = m * advantage + (1 - m) * next_advantage
    return advantages, (advantages + values) * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_eps: float,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss (masked token mean, each token's term times its importance
    `weights` when given) and the fraction of tokens clipped."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    surrogate = torch.maximum(unclipped, clipped)
    loss = masked_mean(surrogate if weights is None else surrogate * weights, mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float) -> torch.Tensor:
    """Clipped value loss: 0.5 * max((V - R)^2, (clip(V) - R)^2), masked mean."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)
