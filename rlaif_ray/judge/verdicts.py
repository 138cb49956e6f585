"""One candidate batch's votes -> verdicts (per response, and per pair in pairwise mode)
with confidence, status and the PPO reward of each response that stands."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlaif_ray.data.records import ItemKind, Status, Verdict, Vote
from rlaif_ray.judge.ensemble import combine
from rlaif_ray.judge.items import JudgeItem
from rlaif_ray.judge.modes import RubricMode, rubric_mode
from rlaif_ray.judge.reward import pairwise_rewards
from rlaif_ray.judge.stats import JudgeStats, mean_by_dimension
from rlaif_ray.judge.voting import JudgeVerdict


def _verdict(item: JudgeItem, kind: str, **values: Any) -> Verdict:
    return Verdict(item_id=item.item_id, item_kind=kind, prompt_id=item.prompt_id,
                   response_id=item.response_a, response_id_b=item.response_b,
                   policy_version=item.policy_version, iteration=item.iteration,
                   prompt=item.prompt, response=item.text_a, response_b=item.text_b,
                   **values)


def _judge_verdicts(item_votes: list[Vote], judge_weights: dict[str, float],
                    mode: RubricMode, voting: Any) -> list[JudgeVerdict]:
    by_judge: dict[str, list[Vote]] = defaultdict(list)
    for v in item_votes:
        by_judge[v.judge].append(v)
    return [mode.judge_verdict(j, judge_weights[j], votes, voting)
            for j, votes in by_judge.items()]


def _dimension_means(verdicts: list[JudgeVerdict]) -> dict[str, float] | None:
    return mean_by_dimension(v.dimension_scores for v in verdicts if v.stands) or None


def verdicts_for(items: list[JudgeItem], votes: list[Vote], judge_weights: dict[str, float],
                 cfg: DictConfig, stats: JudgeStats) -> list[Verdict]:
    """Verdicts for `items` from their `votes`; updates `stats`."""
    mode = rubric_mode(cfg.rubric.mode)
    # Plain values, read once: OmegaConf's attribute access for every vote and item was a
    # quarter of the driver's time in the stream at 32 judges (docs/performance.md).
    voting = OmegaConf.to_object(cfg.voting)
    threshold = cfg.review.confidence_threshold
    votes_by_item: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        votes_by_item[v.item_id].append(v)
    stats.add_votes(votes)
    verdicts = []
    for item in items:
        judged = _judge_verdicts(votes_by_item[item.item_id], judge_weights, mode, voting)
        ens = combine(judged, mode.consensus, voting.ensemble, voting.max_score_spread,
                      threshold)
        kept_votes = sum(v.valid for v in judged if v.stands)
        verdicts.append(_verdict(
            item, mode.item_kind,
            dimension_scores=_dimension_means(judged), score=ens.score, winner=ens.winner,
            agreement=ens.agreement, confidence=ens.confidence, votes_kept=kept_votes,
            votes_dropped=sum(v.votes for v in judged) - kept_votes,
            judges_standing=ens.judges_standing, status=ens.status,
            reward=mode.reward(ens.score, ens.status == Status.KEPT)))
        stats.add_verdict(ens.status, ens.judges_standing, ens.agreement)
    if mode.item_kind == ItemKind.PAIR:  # each response's reward comes from its pairs
        verdicts += response_verdicts(verdicts, cfg.reward.pairwise)
    return verdicts


def _response_of(pair: Verdict, response: str) -> Verdict:
    """A response verdict with `pair`'s ids, texts and versions: its own side's."""
    text = pair.response if response == pair.response_id else pair.response_b or ""
    return Verdict(item_id=response, item_kind=ItemKind.RESPONSE, prompt_id=pair.prompt_id,
                   response_id=response, response_id_b=None,
                   policy_version=pair.policy_version, iteration=pair.iteration,
                   prompt=pair.prompt, response=text, response_b=None)


def response_verdicts(pairs: list[Verdict], method: str) -> list[Verdict]:
    """Per-response verdicts in pairwise mode: reward from the standing pairs of its prompt,
    confidence the mean of those pairs'. Responses in no standing pair are dropped."""
    by_prompt: dict[str, list[Verdict]] = defaultdict(list)
    for pair in pairs:
        by_prompt[pair.prompt_id].append(pair)
    verdicts = []
    for group in by_prompt.values():
        standing = [p for p in group if p.stands]
        rewards = pairwise_rewards([(p.response_id, p.response_id_b, p.winner)
                                    for p in standing if p.response_id_b and p.winner], method)
        sides = {r: p for p in group for r in (p.response_id, p.response_id_b) if r}
        for response in sorted(sides):
            unjudged = _response_of(sides[response], response)
            mine = [p for p in standing if response in (p.response_id, p.response_id_b)]
            if not mine:
                verdicts.append(unjudged)
                continue
            verdicts.append(replace(
                unjudged, reward=rewards[response],
                agreement=sum(p.agreement for p in mine) / len(mine),
                confidence=sum(p.confidence for p in mine) / len(mine),
                votes_kept=sum(p.votes_kept for p in mine),
                votes_dropped=sum(p.votes_dropped for p in mine),
                judges_standing=min(p.judges_standing for p in mine), status=Status.KEPT))
    return verdicts
