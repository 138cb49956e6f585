"""Judging statistics that add up across batches: kept fraction, position bias,
abstention rate per judge, inter-judge agreement, votes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JudgeStats:
    items: int = 0
    kept: int = 0
    votes: Counter = field(default_factory=Counter)  # per judge
    abstained: Counter = field(default_factory=Counter)  # per judge
    first_slot: int = 0
    decisive: int = 0
    agreement_sum: float = 0.0
    agreement_items: int = 0  # items with 2+ standing judges

    def add_votes(self, votes: list[dict[str, Any]]) -> None:
        for v in votes:
            self.votes[v["judge"]] += 1
            if v["parse_status"] != "ok":
                self.abstained[v["judge"]] += 1
            elif v["first_slot"] is not None and v["winner"] != "tie":
                self.decisive += 1
                self.first_slot += bool(v["first_slot"])

    def add_verdict(self, kept: bool, judges_standing: int, agreement: float) -> None:
        self.items += 1
        self.kept += kept
        if judges_standing >= 2:
            self.agreement_sum += agreement
            self.agreement_items += 1

    def merge(self, other: JudgeStats) -> None:
        self.items += other.items
        self.kept += other.kept
        self.votes.update(other.votes)
        self.abstained.update(other.abstained)
        self.first_slot += other.first_slot
        self.decisive += other.decisive
        self.agreement_sum += other.agreement_sum
        self.agreement_items += other.agreement_items

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

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "kept": self.kept, "kept_fraction": self.kept_fraction,
                "position_bias": self.position_bias, "abstention_rate": self.abstention_rate,
                "inter_judge_agreement": self.inter_judge_agreement,
                "judge_votes": sum(self.votes.values())}
