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

Critic-free estimators give one advantage per answer (the same on each of its tokens).
Adding one is a function and a `register(Estimator(...))` line here (as verl's
`register_adv_est`); the config and the update read everything else from it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlaif_ray.registry import registered

if TYPE_CHECKING:  # the config validates estimator names without importing torch
    import torch

    from rlaif_ray.train.settings import TrainerConfig


GroupBaseline = Callable[[list[float], bool, float], list[float]]
TokenAdvantages = Callable[..., "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass(frozen=True)
class Estimator:
    """One estimator: how it computes advantages, and its traits the update reads (whether
    it needs a critic, where the KL penalty goes, whether the whole batch's advantages are
    whitened afterwards). Exactly one of `group` (one advantage per answer from its
    prompt group's rewards: `(rewards, normalize_std, eps) -> advantages`) and `tokens`
    (per-token advantages from the KL-shaped rewards:
    `(rewards, values, mask, gamma, lam) -> (advantages, returns or None)`) is set."""

    name: str
    needs_critic: bool
    kl_in_reward: bool  # else a loss term
    group: GroupBaseline | None = None
    tokens: TokenAdvantages | None = None
    always_whiten: bool = False

    @property
    def group_baseline(self) -> bool:
        """Whether it gives one advantage per answer from its prompt group."""
        return self.group is not None


ESTIMATORS: dict[str, Estimator] = {}


def register(method: Estimator) -> Estimator:
    """Add `method` to the estimators `trainer.advantage_estimator` can name."""
    if (method.group is None) == (method.tokens is None):
        raise ValueError(f"estimator {method.name!r} needs exactly one of group or tokens")
    ESTIMATORS[method.name] = method
    return method


def estimator(name: str) -> Estimator:
    """The registered estimator `name`; ValueError names the valid ones."""
    return registered(ESTIMATORS, name, "advantage estimator")


def critic_kind(trainer: TrainerConfig) -> str | None:
    """What critic a `trainer` config section trains: "separate" (a model of its own),
    "shared" (a value head on the policy's trunk: `trainer.critic`) or None (a critic-free
    estimator)."""
    return trainer.critic if estimator(trainer.advantage_estimator).needs_critic else None


def group_advantages(name: str, rewards: Sequence[float], groups: Sequence[str],
                     normalize_std: bool = True, eps: float = 1e-6) -> list[float]:
    """One advantage per answer for a group-baseline estimator (`grpo`, `rloo`);
    `groups[i]` names answer i's prompt. A group of one answer has no baseline: 0."""
    baseline = estimator(name).group
    if baseline is None:
        raise ValueError(f"{name!r} has no group baseline")
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    advantages = [0.0] * len(rewards)
    for indices in members.values():
        if len(indices) < 2:
            continue
        for i, value in zip(indices, baseline([rewards[i] for i in indices], normalize_std,
                                              eps), strict=True):
            advantages[i] = value
    return advantages


def _grpo(rewards: list[float], normalize_std: bool, eps: float) -> list[float]:
    n = len(rewards)
    mean = sum(rewards) / n
    std = (sum((v - mean) ** 2 for v in rewards) / (n - 1)) ** 0.5
    scale = std + eps if normalize_std else 1.0
    # A group without spread carries no signal.
    return [(r - mean) / scale if scale > 0 else 0.0 for r in rewards]


def _rloo(rewards: list[float], normalize_std: bool, eps: float) -> list[float]:
    n = len(rewards)
    mean = sum(rewards) / n
    return [r - (mean * n - r) / (n - 1) for r in rewards]


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token sum of the rewards from each response token to the end of the answer
    (undiscounted), zero outside `mask`: REINFORCE++'s return."""
    masked = rewards * mask
    return (masked.flip(-1).cumsum(-1).flip(-1)) * mask


def _gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
         lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    from rlaif_ray.train.ppo import gae

    return gae(rewards, values, mask, gamma, lam)


def _reinforce_pp(rewards: torch.Tensor, values: None, mask: torch.Tensor, gamma: float,
                  lam: float) -> tuple[torch.Tensor, None]:
    return returns_to_go(rewards, mask), None


register(Estimator("gae", needs_critic=True, kl_in_reward=True, tokens=_gae))
register(Estimator("grpo", needs_critic=False, kl_in_reward=False, group=_grpo))
register(Estimator("rloo", needs_critic=False, kl_in_reward=False, group=_rloo))
register(Estimator("reinforce_pp", needs_critic=False, kl_in_reward=True,
                   tokens=_reinforce_pp, always_whiten=True))
