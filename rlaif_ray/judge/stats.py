"""Judging statistics that add up across batches: kept fraction, position bias,
abstention rate per judge, inter-judge agreement, votes and tokens per judge; and the
length bias of rewards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlaif_ray.data.records import Verdict, Vote


@dataclass
class JudgeStats:
    items: int = 0
    statuses: Counter = field(default_factory=Counter)  # verdicts: kept | dropped | abstained
    votes: Counter = field(default_factory=Counter)  # per judge
    abstained: Counter = field(default_factory=Counter)  # per judge
    first_slot: int = 0
    decisive: int = 0
    agreement_sum: float = 0.0
    agreement_items: int = 0  # items with 2+ standing judges
    prompt_tokens: Counter = field(default_factory=Counter)  # per judge: tokens read
    completion_tokens: Counter = field(default_factory=Counter)  # per judge: tokens written

    def add_votes(self, votes: list[Vote]) -> None:
        for v in votes:
            self.votes[v.judge] += 1
            self.prompt_tokens[v.judge] += v.prompt_tokens
            self.completion_tokens[v.judge] += v.completion_tokens
            if not v.valid:
                self.abstained[v.judge] += 1
            elif v.first_slot is not None and v.winner != "tie":
                self.decisive += 1
                self.first_slot += v.first_slot

    def add_verdict(self, status: str, judges_standing: int, agreement: float) -> None:
        self.items += 1
        self.statuses[status] += 1
        if judges_standing >= 2:
            self.agreement_sum += agreement
            self.agreement_items += 1

    def merge(self, other: JudgeStats) -> None:
        self.items += other.items
        self.statuses.update(other.statuses)
        self.votes.update(other.votes)
        self.abstained.update(other.abstained)
        self.first_slot += other.first_slot
        self.decisive += other.decisive
        self.agreement_sum += other.agreement_sum
        self.agreement_items += other.agreement_items
        self.prompt_tokens.update(other.prompt_tokens)
        self.completion_tokens.update(other.completion_tokens)

    @property
    def kept(self) -> int:
        return self.statuses["kept"]

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.items if self.items else 0.0

    @property
    def position_bias(self) -> float | None:
        """Share of decisive pairwise votes for the first slot shown (0.5 = unbiased)."""
        return self.first_slot / self.decisive if self.decisive else None

    @property
    def abstention_rate(self) -> dict[str, float]:
        return {j: self.abstained[j] / n for j, n in self.votes.items() if n}

    @property
    def inter_judge_agreement(self) -> float | None:
        return self.agreement_sum / self.agreement_items if self.agreement_items else None

    @property
    def judge_usage(self) -> dict[str, dict[str, int]]:
        """Per judge: its votes, the prompt tokens it read and the completion tokens it
        wrote."""
        return {j: {"votes": n, "prompt_tokens": self.prompt_tokens[j],
                    "completion_tokens": self.completion_tokens[j]}
                for j, n in self.votes.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "kept": self.kept, "dropped": self.statuses["dropped"],
                "abstained": self.statuses["abstained"], "kept_fraction": self.kept_fraction,
                "position_bias": self.position_bias, "abstention_rate": self.abstention_rate,
                "inter_judge_agreement": self.inter_judge_agreement,
                "judge_votes": sum(self.votes.values()), "judge_usage": self.judge_usage}


def mean_by_dimension(scores: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each dimension's score over `scores` (a dimension missing from one map is
    averaged over the maps that have it)."""
    totals: dict[str, list[float]] = {}
    for by_dim in scores:
        for dim, score in by_dim.items():
            totals.setdefault(dim, []).append(score)
    return {dim: sum(s) / len(s) for dim, s in totals.items()}


def dimension_means(verdicts: list[Verdict]) -> dict[str, float]:
    """Mean judged score (1-10) per rubric dimension over the verdicts that carry
    dimension scores (pointwise ones)."""
    return mean_by_dimension(v.dimension_scores or {} for v in verdicts)


def length_bias(lengths: list[float], rewards: list[float]) -> float | None:
    """Pearson correlation of answer length (the pipeline gives characters: what a judge
    reads, whatever the tokenizer) with reward (0: none; 1: longer always wins).
    None when fewer than 3 answers or either side does not vary."""
    if len(lengths) != len(rewards):
        raise ValueError("length_bias needs one reward per length")
    n = len(lengths)
    if n < 3:
        return None
    mean_x, mean_y = sum(lengths) / n, sum(rewards) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(lengths, rewards, strict=True))
    var_x = sum((x - mean_x) ** 2 for x in lengths)
    var_y = sum((y - mean_y) ** 2 for y in rewards)
    if var_x <= 1e-12 or var_y <= 1e-12:
        return None
    return cov / (var_x * var_y) ** 0.5
