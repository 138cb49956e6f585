"""Advantage estimators by name (`trainer.advantage_estimator`), a registry as in verl.

- `gae`: PPO with a critic. The judge's reward on the last response token, a per-token
  KL penalty in the reward, generalised advantage estimation with the critic's values.
- `grpo`: no critic. Each answer's reward minus the mean reward of its prompt's group (the
  `generator.samples_per_prompt` answers to one prompt), divided by the group's standard
  deviation when `trainer.grpo_normalize_std`; the KL to the reference is a loss term.
- `rloo`: no critic. Each answer's reward minus the mean reward of the *other* answers to
  its prompt (leave-one-out); the KL is a loss term.
- `reinforce_pp`: no critic (REINFORCE++). The reward with the per-token KL penalty in it,
  summed to the end of the answer (the return), normalised over the whole batch.

Critic-free estimators give one advantage per answer (the same on each of its tokens)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config validates estimator names without importing torch
    import torch


@dataclass(frozen=True)
class Estimator:
    """How one estimator trains: whether it needs a critic, where the KL penalty goes, and
    whether the advantages of the whole batch are whitened afterwards."""

    name: str
    needs_critic: bool
    kl_in_reward: bool  # else a loss term
    group_baseline: bool  # one advantage per answer from its prompt group's rewards
    always_whiten: bool = False


ESTIMATORS = {e.name: e for e in (
    Estimator("gae", needs_critic=True, kl_in_reward=True, group_baseline=False),
    Estimator("grpo", needs_critic=False, kl_in_reward=False, group_baseline=True),
    Estimator("rloo", needs_critic=False, kl_in_reward=False, group_baseline=True),
    Estimator("reinforce_pp", needs_critic=False, kl_in_reward=True, group_baseline=False,
              always_whiten=True),
)}


def estimator(name: str) -> Estimator:
    """The registered estimator `name`; ValueError names the valid ones."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of "
                         f"{', '.join(ESTIMATORS)}") from None


def critic_kind(trainer) -> str | None:
    """What critic a `trainer` config section trains: "separate" (a model of its own),
    "shared" (a value head on the policy's trunk: `trainer.critic`) or None (a critic-free
    estimator)."""
    return trainer["critic"] if estimator(trainer["advantage_estimator"]).needs_critic else None


def group_advantages(name: str, rewards: Sequence[float], groups: Sequence[str],
                     normalize_std: bool = True, eps: float = 1e-6) -> list[float]:
    """One advantage per answer for the group-baseline estimators (`grpo`, `rloo`);
    `groups[i]` names answer i's prompt. A group of one answer has no baseline: 0."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    advantages = [0.0] * len(rewards)
    for indices in members.values():
        n = len(indices)
        if n < 2:
            continue
        values = [rewards[i] for i in indices]
        mean = sum(values) / n
        std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
        scale = std + eps if normalize_std else 1.0
        for i in indices:
            if name == "grpo":  # a group without spread carries no signal
                advantages[i] = (rewards[i] - mean) / scale if scale > 0 else 0.0
            elif name == "rloo":
                advantages[i] = rewards[i] - (mean * n - rewards[i]) / (n - 1)
            else:
                raise ValueError(f"{name!r} has no group baseline")
    return advantages


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token sum of the rewards from each response token to the end of the answer
    (undiscounted), zero outside `mask`: REINFORCE++'s return."""
    masked = rewards * mask
    return (masked.flip(-1).cumsum(-1).flip(-1)) * mask
