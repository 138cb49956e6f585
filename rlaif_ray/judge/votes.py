"""From candidates to judge requests, and from judge replies to votes.

A request asks one judge for `votes` samples on one item in one order. Pairwise items are
asked in both orders (A/B and B/A); replies are parsed strictly and un-swapped, so a vote's
`winner` always refers to the item's own response_a / response_b. A reply that does not
parse is an abstention, kept with its raw text."""

from __future__ import annotations

from typing import Any

from rlaif_ray.data.records import Candidate, Vote
from rlaif_ray.judge.items import JudgeItem, JudgeRequest
from rlaif_ray.judge.rubric import Rubric, VoteParseError


def judge_items(rubric: Rubric, candidates: list[Candidate]) -> list[JudgeItem]:
    """Items to judge: each response (pointwise) or each pair of a prompt's responses."""
    return rubric.kind.items(candidates)


def requests_for(rubric: Rubric, items: list[JudgeItem],
                 both_orders: bool = True) -> list[JudgeRequest]:
    """Rendered judge messages: one per item (pointwise) or, pairwise, AB and (with
    `both_orders`) BA."""
    return rubric.kind.requests(rubric, items, both_orders)


def _vote_fields(rubric: Rubric, item: JudgeItem, judge: str, judge_kind: str, replica: str,
                 order: str, index: int, raw: str | None) -> dict[str, Any]:
    return {"item_id": item.item_id, "prompt_id": item.prompt_id, "judge": judge,
            "judge_kind": judge_kind, "replica": replica, "kind": rubric.mode,
            "order": order, "sample_index": index, "raw_text": raw or "",
            "policy_version": item.policy_version, "iteration": item.iteration}


def parse_reply(rubric: Rubric, item: JudgeItem, judge: str, kind: str, replica: str,
                order: str, index: int, raw: str | None, error: str | None, *,
                judge_s: float = 0.0, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> Vote:
    """One vote from a judge's raw reply (an abstention if it failed or does not parse);
    `judge_s` and the token counts are what the request cost this vote."""
    fields = _vote_fields(rubric, item, judge, kind, replica, order, index, raw)
    fields.update(judge_s=judge_s, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens)
    try:
        if raw is None:
            raise VoteParseError(error or "no reply")
        vote = rubric.parse(raw)
    except VoteParseError as err:
        return Vote(**fields, parse_status="abstain", error=str(err))
    return Vote(**fields | rubric.kind.read_vote(rubric, vote, order))


def rule_votes(rubric: Rubric, items: list[JudgeItem], judge: str,
               checks: list[Any]) -> list[Vote]:
    """A rule judge's single deterministic vote per item."""
    return [Vote(**_vote_fields(rubric, item, judge, "rule", "driver", "", 0, None)
                 | rubric.kind.rule_vote(checks, item)) for item in items]
