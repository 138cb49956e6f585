"""Training samples from an iteration's candidates and verdicts, chosen by the curriculum
(their collation into tensors: `rlaif_ray.train.batch`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlaif_ray.data.records import Candidate, ItemKind, Verdict
from rlaif_ray.judge.reward import remove_length_bias


@dataclass(frozen=True)
class TrainingSample:
    """One answer an update trains on: its prompt's and its own tokens, the generator's
    log-probs of the sampled tokens, the policy version that wrote it, its reward (after the
    length correction) and its verdict's confidence. `advantage` is the critic-free
    estimators' scalar, which the update sets (`ppo_update.ppo_iteration`)."""

    response_id: str
    prompt_id: str
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    logprobs: list[float]
    reward: float
    confidence: float
    policy_version: int
    advantage: float = 0.0


def confidence_floor(iteration: int, curriculum: Any) -> float:
    """The curriculum's confidence floor at `iteration`: linear from start to end."""
    progress = min(iteration / curriculum.anneal_iterations, 1.0)
    return curriculum.start_confidence + progress * (curriculum.end_confidence -
                                                     curriculum.start_confidence)


def rewarded_verdicts(verdicts: list[Verdict]) -> list[Verdict]:
    """The response verdicts that stand with a reward: what training and the reward metrics
    use."""
    return [v for v in verdicts
            if v.item_kind == ItemKind.RESPONSE and v.stands and v.reward is not None]


def training_samples(candidates: list[Candidate], verdicts: list[Verdict],
                     floor: float, length_penalty: float = 0.0) -> list[TrainingSample]:
    """Responses whose verdict stands, at or above the confidence `floor` (if none is, all
    that stand: the most confident data available), most confident first. With a
    `length_penalty` (0-1), that share of the rewards' linear dependence on answer length
    (characters) is taken out first (`remove_length_bias`)."""
    by_id = {c.response_id: c for c in candidates}
    rewarded = {v.response_id: v for v in rewarded_verdicts(verdicts)
                if by_id[v.response_id].response_token_ids}
    rewards = dict(zip(rewarded, remove_length_bias(
        [float(v.reward or 0.0) for v in rewarded.values()],
        [len(by_id[r].response) for r in rewarded], length_penalty), strict=True))
    chosen = [v for v in rewarded.values() if v.confidence >= floor] or list(
        rewarded.values())
    chosen.sort(key=lambda v: (-v.confidence, v.response_id))
    samples = []
    for verdict in chosen:
        answer = by_id[verdict.response_id]
        samples.append(TrainingSample(
            response_id=answer.response_id, prompt_id=answer.prompt_id,
            prompt_token_ids=list(answer.prompt_token_ids),
            response_token_ids=list(answer.response_token_ids),
            logprobs=list(answer.logprobs), reward=rewards[answer.response_id],
            confidence=float(verdict.confidence), policy_version=answer.policy_version))
    return samples
