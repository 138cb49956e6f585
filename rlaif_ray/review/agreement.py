"""Agreement between two raters (a judge and a person) on the same items: Cohen's kappa,
Spearman's rank correlation, and what agreeing on one item means on the rubric's scale."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from rlaif_ray.judge.modes import SCORE_MAX, SCORE_MIN

MIDPOINT = (SCORE_MIN + SCORE_MAX) / 2


def agrees(judge: Any, person: Any) -> bool:
    """Whether a judge's view of an item agrees with a person's: the same winner
    (pairwise), or a score on the same side of the scale's midpoint (pointwise)."""
    if isinstance(person, str):
        return bool(judge == person)
    return (judge > MIDPOINT) == (person > MIDPOINT)


# Scores binned for kappa: low 1-3, middle 4-7, high 8-10 (the rubric's 1-10 scale).
SCORE_BINS = ((1, 3), (4, 7), (8, 10))


def score_bin(score: float) -> int:
    """The bin (0, 1, 2) of a 1-10 score; a mean between bins goes to the nearer."""
    rounded = min(max(round(score), SCORE_MIN), SCORE_MAX)
    return next(i for i, (low, high) in enumerate(SCORE_BINS) if low <= rounded <= high)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters' labels: (observed - chance agreement) / (1 - chance);
    None with no items, 1.0 when both always give the one same label."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    if not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if chance == 1.0:
        return 1.0
    return (observed - chance) / (1.0 - chance)


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); None with fewer than
    two items or when either side is constant."""
    if len(a) != len(b):
        raise ValueError("both raters must score the same items")
    if len(a) < 2:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = fmean(ra), fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var_a, var_b = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    if var_a == 0 or var_b == 0:
        return None
    return cov / (var_a * var_b) ** 0.5
