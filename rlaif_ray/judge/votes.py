"""From candidates to judge requests, and from judge replies to votes.

A request asks one judge for `votes` samples on one item in one order. Pairwise items are
asked in both orders (A/B and B/A); replies are parsed strictly and un-swapped, so a vote's
`winner` always refers to the item's own response_a / response_b. A reply that does not
parse is an abstention, kept with its raw text."""

from __future__ import annotations

from typing import Any

from rlaif_ray.data.records import Candidate
from rlaif_ray.judge.rubric import Rubric, VoteParseError


def judge_items(rubric: Rubric, candidates: list[Candidate]) -> list[dict[str, Any]]:
    """Items to judge: each response (pointwise) or each pair of a prompt's responses."""
    return rubric.kind.items(candidates)


def requests_for(rubric: Rubric, items: list[dict[str, Any]],
                 both_orders: bool = True) -> list[dict[str, str]]:
    """Rendered judge messages: one per item (pointwise) or, pairwise, AB and (with
    `both_orders`) BA."""
    return rubric.kind.requests(rubric, items, both_orders)


def _vote_row(item: dict[str, Any], judge: str, kind: str, replica: str, order: str,
              index: int, raw: str | None) -> dict[str, Any]:
    return {"item_id": item["item_id"], "prompt_id": item["prompt_id"], "judge": judge,
            "judge_kind": kind, "replica": replica, "order": order, "sample_index": index,
            "raw_text": raw or "", "scores": None, "overall": None, "winner": None,
            "first_slot": None, "dimension_winners": None, "parse_status": "ok", "error": None}


def parse_reply(rubric: Rubric, item: dict[str, Any], judge: str, kind: str, replica: str,
                order: str, index: int, raw: str | None, error: str | None) -> dict[str, Any]:
    """One vote row from a judge's raw reply (abstention if it failed or does not parse)."""
    row = _vote_row(item, judge, kind, replica, order, index, raw)
    try:
        if raw is None:
            raise VoteParseError(error or "no reply")
        vote = rubric.parse(raw)
    except VoteParseError as err:
        row.update(parse_status="abstain", error=str(err))
        return row
    row.update(rubric.kind.read_vote(rubric, vote, order))
    return row


def rule_votes(rubric: Rubric, items: list[dict[str, Any]], judge: str,
               checks: list[Any]) -> list[dict[str, Any]]:
    """A rule judge's single deterministic vote per item."""
    rows = []
    for item in items:
        row = _vote_row(item, judge, "rule", "driver", "", 0, None)
        row.update(rubric.kind.rule_vote(checks, item))
        rows.append(row)
    return rows
