"""Rewards per response for PPO, from verdicts.

Pointwise: the response's ensemble score. Pairwise: its win rate against the other
samples of the same prompt (ties count half), or its Bradley-Terry probability of beating
them, from standing pair verdicts only. A response with no standing verdict gets no reward
(it never reaches the loss)."""

from __future__ import annotations

import math
from collections import defaultdict

from rlaif_ray.registry import registered


def _pair_outcomes(pairs: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, float]]]:
    """response -> [(opponent, points in {1, 0.5, 0})]."""
    outcomes: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for a, b, winner in pairs:
        points_a = {"A": 1.0, "B": 0.0, "tie": 0.5}[winner]
        outcomes[a].append((b, points_a))
        outcomes[b].append((a, 1.0 - points_a))
    return outcomes


def win_rates(pairs: list[tuple[str, str, str]]) -> dict[str, float]:
    """Mean points of each response over its standing pairs (a, b, winner)."""
    return {r: sum(p for _, p in games) / len(games)
            for r, games in _pair_outcomes(pairs).items()}


def bradley_terry(pairs: list[tuple[str, str, str]], iterations: int = 200,
                  prior: float = 0.5) -> dict[str, float]:
    """Bradley-Terry strengths by the MM algorithm (ties as half wins; `prior` pseudo-games
    against the field keep all-win/all-loss records finite). Returns each response's mean
    probability of beating the others."""
    outcomes = _pair_outcomes(pairs)
    strength = dict.fromkeys(outcomes, 1.0)
    for _ in range(iterations):
        updated = {}
        for r, games in outcomes.items():
            wins = sum(p for _, p in games) + prior
            denom = sum(1.0 / (strength[r] + strength[o]) for o, _ in games) + prior
            updated[r] = wins / denom
        norm = math.exp(sum(math.log(s) for s in updated.values()) / len(updated))
        strength = {r: s / norm for r, s in updated.items()}
    return {r: sum(strength[r] / (strength[r] + strength[o]) for o, _ in games) / len(games)
            for r, games in outcomes.items()}


def remove_length_bias(rewards: list[float], lengths: list[float],
                       share: float) -> list[float]:
    """`rewards` less `share` of their linear dependence on `lengths` (least squares over
    these answers): with share 1 the rewards no longer correlate with length; the mean
    reward is unchanged."""
    n = len(rewards)
    if n < 2 or share == 0:
        return list(rewards)
    mean_len, mean_reward = sum(lengths) / n, sum(rewards) / n
    var = sum((x - mean_len) ** 2 for x in lengths)
    if var <= 1e-12:
        return list(rewards)
    slope = sum((x - mean_len) * (y - mean_reward)
                for x, y in zip(lengths, rewards, strict=True)) / var
    return [y - share * slope * (x - mean_len) for x, y in zip(lengths, rewards, strict=True)]


# How a response's reward comes from its pair verdicts (`reward.pairwise`), by name.
PAIRWISE_REWARDS = {"winrate": win_rates, "bradley_terry": bradley_terry}


def pairwise_rewards(pairs: list[tuple[str, str, str]], method: str) -> dict[str, float]:
    """Rewards for the responses of one prompt from its standing pairs, by `method` (a
    name in `PAIRWISE_REWARDS`)."""
    return registered(PAIRWISE_REWARDS, method, "pairwise reward")(pairs)
