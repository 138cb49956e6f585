"""What judging costs: each judge's tokens at its `judges[].price_per_mtok`, and the cost of
one kept verdict (the method's argument: AI labels are cheap per label that stands)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Usage = dict[str, dict[str, Any]]  # judge -> {votes, prompt_tokens, completion_tokens, cost}


def judge_prices(judges: Iterable[Any]) -> dict[str, dict[str, float] | None]:
    """Each judge's price per million tokens ({input, output}), None where unpriced."""
    return {j.name: (dict(j.price_per_mtok) if j.price_per_mtok is not None else None)
            for j in judges}


def priced(usage: Mapping[str, Mapping[str, int]],
           prices: Mapping[str, Mapping[str, float] | None]) -> Usage:
    """`usage` with each judge's `cost` added (None for an unpriced judge)."""
    out: Usage = {}
    for judge, counts in usage.items():
        price = prices.get(judge)
        cost = None if price is None else (counts["prompt_tokens"] * price["input"] +
                                           counts["completion_tokens"] * price["output"]) / 1e6
        out[judge] = {**counts, "cost": cost}
    return out


def total_cost(usage: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The priced judges' cost together (None when no judge is priced)."""
    costs = [u["cost"] for u in usage.values() if u.get("cost") is not None]
    return sum(costs) if costs else None


def cost_per(usage: Mapping[str, Mapping[str, Any]], count: int) -> float | None:
    """The priced judges' cost per one of `count` things (kept verdicts, DPO pairs)."""
    cost = total_cost(usage)
    return cost / count if cost is not None and count else None


def add_usage(rows: Iterable[Mapping[str, Mapping[str, Any]]]) -> Usage:
    """Several iterations' usage summed per judge (a cost stays None if never priced)."""
    out: Usage = {}
    for usage in rows:
        for judge, counts in usage.items():
            mine = out.setdefault(judge, {"votes": 0, "prompt_tokens": 0,
                                          "completion_tokens": 0, "cost": None})
            for key in ("votes", "prompt_tokens", "completion_tokens"):
                mine[key] += counts[key]
            if counts.get("cost") is not None:
                mine["cost"] = (mine["cost"] or 0.0) + counts["cost"]
    return out
