"""Rubric modes (`rubric.mode`): what one judged item is, how a judge is asked about it and
how its vote reads. `pointwise` scores each response on every rubric dimension (1-10);
`pairwise` compares two answers to one prompt (A, B or tie, overall and per dimension),
asked in both orders so a judge's first-slot bias cancels.

The judging code asks the mode object (`rubric_mode(name)`, `Rubric.kind`) instead of
branching on its name. Adding a mode is a class here and its entry in `RUBRIC_MODES`, with
its prompt template in `rlaif_ray/resources/templates/<name>.txt`, its DPO pair maker
(judge/pairs.py) and its review form (review/forms.py)."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import TYPE_CHECKING, Any, ClassVar

from rlaif_ray.data.records import Candidate, ItemKind, Vote
from rlaif_ray.judge.ensemble import Consensus, Ensemble, score_consensus, winner_consensus
from rlaif_ray.judge.items import JudgeItem, JudgeRequest
from rlaif_ray.judge.rules import rule_score
from rlaif_ray.judge.voting import JudgeVerdict, pairwise_verdict, pointwise_verdict
from rlaif_ray.registry import registered

if TYPE_CHECKING:
    from rlaif_ray.judge.rubric import Rubric

SCORE_MIN, SCORE_MAX = 1, 10
WINNERS = ("A", "B", "tie")
SWAP = {"A": "B", "B": "A", "tie": "tie"}


def pair_id(response_a: str, response_b: str) -> str:
    return f"{response_a}|{response_b}"


def _item(candidate: Candidate, other: Candidate | None = None,
          item_id: str | None = None) -> JudgeItem:
    return JudgeItem(item_id=item_id or candidate.response_id,
                     prompt_id=candidate.prompt_id, prompt=candidate.prompt,
                     response_a=candidate.response_id, text_a=candidate.response,
                     policy_version=candidate.policy_version, iteration=candidate.iteration,
                     response_b=other.response_id if other else None,
                     text_b=other.response if other else None)


class RubricMode:
    """One way of judging: its items, requests and votes (a subclass per mode)."""

    name: ClassVar[str]
    item_kind: ClassVar[ItemKind]  # the verdict rows' `item_kind` of a judged item
    placeholders: ClassVar[tuple[str, ...]]  # what its prompt template must contain
    value_schema: ClassVar[dict[str, Any]]  # JSON schema of one value of a vote
    # The answers a person sees on a review item (its queue entry's and Label Studio task's
    # fields), and whether rewards come from comparing a prompt's answers (then a person's
    # verdict on one item changes the rewards of all of them).
    answer_fields: ClassVar[tuple[str, ...]]
    relative_rewards: ClassVar[bool]

    def vote_keys(self, dimensions: tuple[str, ...]) -> list[str]:
        """The keys of a vote, each holding one value of `value_schema`."""
        raise NotImplementedError

    def judge_verdict(self, judge: str, weight: float, votes: list[Vote],
                      voting: Any) -> JudgeVerdict:
        """One judge's verdict on one item from its votes (`voting`: the settings)."""
        raise NotImplementedError

    def consensus(self, standing: list[JudgeVerdict], method: Ensemble,
                  max_score_spread: float) -> Consensus:
        """What the standing judges decided on one item, combined by `method`."""
        raise NotImplementedError

    def valid_value(self, value: Any) -> bool:
        raise NotImplementedError

    def items(self, candidates: list[Candidate]) -> list[JudgeItem]:
        """What the judges judge in a batch of candidates."""
        raise NotImplementedError

    def requests(self, rubric: Rubric, items: list[JudgeItem],
                 both_orders: bool) -> list[JudgeRequest]:
        """Rendered judge messages for `items`."""
        raise NotImplementedError

    def requests_per_prompt(self, samples: int, both_orders: bool) -> int:
        """Judge requests a prompt with `samples` answers makes."""
        raise NotImplementedError

    def read_vote(self, rubric: Rubric, vote: dict[str, Any], order: str) -> dict[str, Any]:
        """A parsed vote's fields of the vote row (in the item's own order)."""
        raise NotImplementedError

    def rule_vote(self, checks: list[Any], item: JudgeItem) -> dict[str, Any]:
        """A rule judge's vote fields on `item` (scored by `checks`)."""
        raise NotImplementedError

    def reward(self, score: float | None, kept: bool) -> float | None:
        """The PPO reward a judged item's verdict carries (None: its responses get theirs
        from their pairs)."""
        return None


class Pointwise(RubricMode):
    name = "pointwise"
    item_kind = ItemKind.RESPONSE
    answer_fields = ("response",)
    relative_rewards = False
    placeholders = ("{prompt}", "{response}", "{dimensions}")
    value_schema = {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX}

    def vote_keys(self, dimensions: tuple[str, ...]) -> list[str]:
        return list(dimensions)

    def judge_verdict(self, judge: str, weight: float, votes: list[Vote],
                      voting: Any) -> JudgeVerdict:
        return pointwise_verdict(judge, weight, votes, voting)

    def consensus(self, standing: list[JudgeVerdict], method: Ensemble,
                  max_score_spread: float) -> Consensus:
        return score_consensus(standing, method, max_score_spread)

    def valid_value(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and SCORE_MIN <= value <= SCORE_MAX)

    def items(self, candidates: list[Candidate]) -> list[JudgeItem]:
        return [_item(c) for c in candidates]

    def requests(self, rubric: Rubric, items: list[JudgeItem],
                 both_orders: bool) -> list[JudgeRequest]:
        return [JudgeRequest(i.item_id, "", rubric.render(i.prompt, response=i.text_a))
                for i in items]

    def requests_per_prompt(self, samples: int, both_orders: bool) -> int:
        return samples

    def read_vote(self, rubric: Rubric, vote: dict[str, Any], order: str) -> dict[str, Any]:
        return {"scores": {d: float(v) for d, v in vote.items()},
                "overall": rubric.overall(rubric.normalise(vote))}

    def rule_vote(self, checks: list[Any], item: JudgeItem) -> dict[str, Any]:
        score = rule_score(checks, item.text_a)
        return {"overall": score, "raw_text": f"{score:.4f}"}

    def reward(self, score: float | None, kept: bool) -> float | None:
        return score if kept else None


class Pairwise(RubricMode):
    name = "pairwise"
    item_kind = ItemKind.PAIR
    answer_fields = ("response_a", "response_b")
    relative_rewards = True
    placeholders = ("{prompt}", "{response_a}", "{response_b}", "{dimensions}")
    value_schema = {"enum": list(WINNERS)}

    def vote_keys(self, dimensions: tuple[str, ...]) -> list[str]:
        return ["overall", *dimensions]

    def judge_verdict(self, judge: str, weight: float, votes: list[Vote],
                      voting: Any) -> JudgeVerdict:
        return pairwise_verdict(judge, weight, votes, voting)

    def consensus(self, standing: list[JudgeVerdict], method: Ensemble,
                  max_score_spread: float) -> Consensus:
        return winner_consensus(standing, method, max_score_spread)

    def valid_value(self, value: Any) -> bool:
        return value in WINNERS

    def items(self, candidates: list[Candidate]) -> list[JudgeItem]:
        """Every pair of each prompt's responses, in response-id order."""
        by_prompt: dict[str, list[Candidate]] = defaultdict(list)
        for c in candidates:
            by_prompt[c.prompt_id].append(c)
        return [_item(a, b, pair_id(a.response_id, b.response_id))
                for group in by_prompt.values()
                for a, b in combinations(sorted(group, key=lambda c: c.response_id), 2)]

    def requests(self, rubric: Rubric, items: list[JudgeItem],
                 both_orders: bool) -> list[JudgeRequest]:
        """AB and (with `both_orders`) BA for each pair."""
        requests = []
        for i in items:
            shown = {"AB": (i.text_a, i.text_b or ""), "BA": (i.text_b or "", i.text_a)}
            for order in ("AB", "BA")[:2 if both_orders else 1]:
                first, second = shown[order]
                requests.append(JudgeRequest(i.item_id, order, rubric.render(
                    i.prompt, response_a=first, response_b=second)))
        return requests

    def requests_per_prompt(self, samples: int, both_orders: bool) -> int:
        return samples * (samples - 1) // 2 * (2 if both_orders else 1)

    def read_vote(self, rubric: Rubric, vote: dict[str, Any], order: str) -> dict[str, Any]:
        """Winners un-swapped: `A` is always the item's response_a."""
        unswap = SWAP if order == "BA" else {w: w for w in SWAP}
        return {"winner": unswap[vote["overall"]], "first_slot": vote["overall"] == "A",
                "dimension_winners": {d: unswap[vote[d]] for d in rubric.dimensions}}

    def rule_vote(self, checks: list[Any], item: JudgeItem) -> dict[str, Any]:
        score_a, score_b = rule_score(checks, item.text_a), rule_score(checks, item.text_b or "")
        winner = "A" if score_a > score_b else "B" if score_b > score_a else "tie"
        return {"order": "AB", "winner": winner, "raw_text": f"{score_a:.4f} vs {score_b:.4f}"}


RUBRIC_MODES: dict[str, RubricMode] = {mode.name: mode for mode in (Pointwise(), Pairwise())}


def rubric_mode(name: str) -> RubricMode:
    """The rubric mode `name`; ValueError names the valid ones."""
    return registered(RUBRIC_MODES, name, "rubric mode")
