"""Self-consistency voting: one judge's repeated votes on one item -> a verdict that stands
or not.

Pointwise: the overall scores of the valid votes must spread by at most `max_score_spread`.
Pairwise: the most-voted answer (votes un-swapped, both orders counted) must hold at least
`agreement_threshold` of the valid votes. Too few valid votes (abstentions) and nothing
stands. Confidence = agreement x share of votes that parsed."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from rlaif_ray.data.records import Vote


@dataclass
class JudgeVerdict:
    judge: str
    weight: float
    votes: int
    valid: int
    stands: bool
    agreement: float
    confidence: float
    score: float | None = None  # pointwise overall in [0, 1]
    dimension_scores: dict[str, float] = field(default_factory=dict)
    winner: str | None = None  # pairwise: "A" | "B" | "tie"
    preference: float | None = None  # pairwise: share of valid votes for A (ties half)


def _enough_valid(valid: int, total: int, min_valid_fraction: float) -> bool:
    return valid >= max(1, math.ceil(min_valid_fraction * total))


def pointwise_verdict(judge: str, weight: float, votes: list[Vote],
                      voting: Any) -> JudgeVerdict:
    """Aggregate one judge's pointwise votes on one response."""
    valid = [v for v in votes if v.valid]
    if not _enough_valid(len(valid), len(votes), voting.min_valid_fraction):
        return JudgeVerdict(judge, weight, len(votes), len(valid), False, 0.0, 0.0)
    overalls = [v.overall for v in valid if v.overall is not None]
    spread = max(overalls) - min(overalls)
    agreement = 1.0 - spread
    dims: dict[str, list[float]] = {}
    for v in valid:
        for d, s in (v.scores or {}).items():
            dims.setdefault(d, []).append(s)
    return JudgeVerdict(judge, weight, len(votes), len(valid),
                        stands=spread <= voting.max_score_spread + 1e-9,
                        agreement=agreement,
                        confidence=agreement * len(valid) / len(votes),
                        score=fmean(overalls),
                        dimension_scores={d: fmean(s) for d, s in dims.items()})


def pairwise_verdict(judge: str, weight: float, votes: list[Vote],
                     voting: Any) -> JudgeVerdict:
    """Aggregate one judge's pairwise votes (both orders, un-swapped) on one pair."""
    valid = [v for v in votes if v.valid]
    if not _enough_valid(len(valid), len(votes), voting.min_valid_fraction):
        return JudgeVerdict(judge, weight, len(votes), len(valid), False, 0.0, 0.0)
    counts = Counter(v.winner for v in valid)
    ranked = counts.most_common()
    top_winner, top_count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == top_count:
        top_winner = "tie"  # an even split between answers is no preference
    agreement = top_count / len(valid)
    return JudgeVerdict(judge, weight, len(votes), len(valid),
                        stands=agreement >= voting.agreement_threshold - 1e-9,
                        agreement=agreement,
                        confidence=agreement * len(valid) / len(votes),
                        winner=top_winner,
                        preference=(counts["A"] + 0.5 * counts["tie"]) / len(valid))

