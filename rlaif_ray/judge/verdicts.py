"""One candidate batch's votes -> verdict rows (per response, and per pair in pairwise
mode) with confidence, status and the PPO reward of each response that stands."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlaif_ray.data.records import Status, stands
from rlaif_ray.judge.ensemble import combine
from rlaif_ray.judge.modes import RubricMode, rubric_mode
from rlaif_ray.judge.reward import pairwise_rewards
from rlaif_ray.judge.stats import JudgeStats, mean_by_dimension
from rlaif_ray.judge.voting import JudgeVerdict


def _verdict_row(item: dict[str, Any], kind: str, **values: Any) -> dict[str, Any]:
    row = {"item_id": item["item_id"], "item_kind": kind, "prompt_id": item["prompt_id"],
           "response_id": item["response_a"], "response_id_b": item.get("response_b"),
           "dimension_scores": None, "score": None, "winner": None, "reward": None,
           "agreement": 0.0, "confidence": 0.0, "votes_kept": 0, "votes_dropped": 0,
           "judges_standing": 0, "status": Status.DROPPED, "source": "judge",
           "reviewer": None, "reviewed_at": None}
    row.update(values)
    return row


def _judge_verdicts(item_votes: list[dict[str, Any]], judge_weights: dict[str, float],
                    mode: RubricMode, voting: Any) -> list[JudgeVerdict]:
    by_judge: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in item_votes:
        by_judge[v["judge"]].append(v)
    return [mode.judge_verdict(j, judge_weights[j], votes, voting)
            for j, votes in by_judge.items()]


def _dimension_means(verdicts: list[JudgeVerdict]) -> dict[str, float] | None:
    return mean_by_dimension(v.dimension_scores for v in verdicts if v.stands) or None


def verdict_rows(items: list[dict[str, Any]], votes: list[dict[str, Any]],
                 judge_weights: dict[str, float], cfg: DictConfig,
                 stats: JudgeStats) -> list[dict[str, Any]]:
    """Verdicts for `items` from their `votes`; updates `stats`."""
    mode = rubric_mode(cfg.rubric.mode)
    # Plain values, read once: OmegaConf's attribute access for every vote and item was a
    # quarter of the driver's time in the stream at 32 judges (docs/performance.md).
    voting = OmegaConf.to_object(cfg.voting)
    threshold = cfg.review.confidence_threshold
    votes_by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in votes:
        votes_by_item[v["item_id"]].append(v)
    stats.add_votes(votes)
    rows = []
    for item in items:
        verdicts = _judge_verdicts(votes_by_item[item["item_id"]], judge_weights, mode,
                                   voting)
        ens = combine(verdicts, mode.name, voting.ensemble, voting.max_score_spread,
                      threshold)
        kept_votes = sum(v.valid for v in verdicts if v.stands)
        row = _verdict_row(
            item, mode.item_kind,
            dimension_scores=_dimension_means(verdicts), score=ens.score, winner=ens.winner,
            agreement=ens.agreement, confidence=ens.confidence, votes_kept=kept_votes,
            votes_dropped=sum(v.votes for v in verdicts) - kept_votes,
            judges_standing=ens.judges_standing, status=ens.status,
            reward=mode.reward(ens.score, ens.status == Status.KEPT))
        stats.add_verdict(ens.status, ens.judges_standing, ens.agreement)
        rows.append(row)
    if mode.item_kind == "pair":  # each response's reward comes from its pairs
        rows += response_rows_from_pairs(rows, cfg.reward.pairwise)
    return rows


def response_rows_from_pairs(pair_rows: list[dict[str, Any]],
                             method: str) -> list[dict[str, Any]]:
    """Per-response verdicts in pairwise mode: reward from the standing pairs of its prompt,
    confidence the mean of those pairs'. Responses in no standing pair are dropped."""
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pair_rows:
        by_prompt[row["prompt_id"]].append(row)
    rows = []
    for prompt_id, pairs in by_prompt.items():
        standing = [p for p in pairs if stands(p)]
        rewards = pairwise_rewards([(p["response_id"], p["response_id_b"], p["winner"])
                                    for p in standing], method)
        responses = sorted({r for p in pairs for r in (p["response_id"], p["response_id_b"])})
        for response in responses:
            mine = [p for p in standing if response in (p["response_id"], p["response_id_b"])]
            item = {"item_id": response, "prompt_id": prompt_id, "response_a": response}
            if not mine:
                rows.append(_verdict_row(item, "response", response_id_b=None))
                continue
            rows.append(_verdict_row(
                item, "response", response_id_b=None, reward=rewards[response],
                agreement=sum(p["agreement"] for p in mine) / len(mine),
                confidence=sum(p["confidence"] for p in mine) / len(mine),
                votes_kept=sum(p["votes_kept"] for p in mine),
                votes_dropped=sum(p["votes_dropped"] for p in mine),
                judges_standing=min(p["judges_standing"] for p in mine), status=Status.KEPT))
    return rows
