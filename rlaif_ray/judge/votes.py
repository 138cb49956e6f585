"""From candidates to judge requests, and from judge replies to votes.

A request asks one judge for `votes` samples on one item in one order. Pairwise items are
asked in both orders (A/B and B/A); replies are parsed strictly and un-swapped, so a vote's
`winner` always refers to the item's own response_a / response_b. A reply that does not
parse is an abstention, kept with its raw text."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any

from rlaif_ray.judge.rubric import Rubric, VoteParseError
from rlaif_ray.judge.rules import rule_score

SWAP = {"A": "B", "B": "A", "tie": "tie"}


def pair_id(response_a: str, response_b: str) -> str:
    return f"{response_a}|{response_b}"


def judge_items(rubric: Rubric, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items to judge: each response (pointwise) or each pair of a prompt's responses."""
    if rubric.mode == "pointwise":
        return [{"item_id": c["response_id"], "prompt_id": c["prompt_id"], "prompt": c["prompt"],
                 "response_a": c["response_id"], "text_a": c["response"],
                 "response_b": None, "text_b": None} for c in candidates]
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in candidates:
        by_prompt[c["prompt_id"]].append(c)
    items = []
    for group in by_prompt.values():
        for a, b in combinations(sorted(group, key=lambda c: c["response_id"]), 2):
            items.append({"item_id": pair_id(a["response_id"], b["response_id"]),
                          "prompt_id": a["prompt_id"], "prompt": a["prompt"],
                          "response_a": a["response_id"], "text_a": a["response"],
                          "response_b": b["response_id"], "text_b": b["response"]})
    return items


def requests_for(rubric: Rubric, items: list[dict[str, Any]],
                 both_orders: bool = True) -> list[dict[str, str]]:
    """Rendered judge messages: one per item (pointwise) or, pairwise, AB and (with
    `both_orders`) BA."""
    if rubric.mode == "pointwise":
        return [{"item_id": i["item_id"], "order": "",
                 "message": rubric.render(i["prompt"], response=i["text_a"])} for i in items]
    requests = []
    for i in items:
        requests.append({"item_id": i["item_id"], "order": "AB",
                         "message": rubric.render(i["prompt"], response_a=i["text_a"],
                                                  response_b=i["text_b"])})
        if not both_orders:
            continue
        requests.append({"item_id": i["item_id"], "order": "BA",
                         "message": rubric.render(i["prompt"], response_a=i["text_b"],
                                                  response_b=i["text_a"])})
    return requests


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
    if rubric.mode == "pointwise":
        normalised = rubric.normalise(vote)
        row.update(scores={d: float(v) for d, v in vote.items()},
                   overall=rubric.overall(normalised))
    else:
        unswap = SWAP if order == "BA" else {w: w for w in SWAP}
        row.update(winner=unswap[vote["overall"]],
                   first_slot=vote["overall"] == "A",
                   dimension_winners={d: unswap[vote[d]] for d in rubric.dimensions})
    return row


def rule_votes(rubric: Rubric, items: list[dict[str, Any]], judge: str,
               checks: list[Any]) -> list[dict[str, Any]]:
    """A rule judge's single deterministic vote per item."""
    rows = []
    for item in items:
        row = _vote_row(item, judge, "rule", "driver", "AB" if item["response_b"] else "", 0,
                        None)
        score_a = rule_score(checks, item["text_a"])
        if item["response_b"] is None:
            row.update(overall=score_a, raw_text=f"{score_a:.4f}")
        else:
            score_b = rule_score(checks, item["text_b"])
            winner = "A" if score_a > score_b else "B" if score_b > score_a else "tie"
            row.update(winner=winner, raw_text=f"{score_a:.4f} vs {score_b:.4f}")
        rows.append(row)
    return rows
