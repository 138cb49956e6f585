"""Combining judges into one verdict per item, with a confidence in [0, 1].

Only verdicts that stood under self-consistency take part. `mean` averages scores (or
pairwise preferences) by judge weight, `majority` takes the weighted median score (or the
weighted plurality winner), `all_agree` needs every judge to stand and agree. Disagreement
between judges lowers confidence; a verdict below `review.confidence_threshold` leaves the
training signal and goes to human review. The modes are a registry (`ENSEMBLES`): adding
one is its score and winner functions here. What the judges decide (a score, or a winner)
is the rubric mode's `consensus`: `score_consensus` or `winner_consensus`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from rlaif_ray.data.records import Status
from rlaif_ray.judge.voting import JudgeVerdict


@dataclass
class EnsembleVerdict:
    status: Status  # kept | dropped | abstained
    confidence: float
    agreement: float  # between judges, 1 = full agreement
    score: float | None = None
    winner: str | None = None
    judges_standing: int = 0


def _weighted_median(values: list[float], weights: list[float]) -> float:
    pairs = sorted(zip(values, weights, strict=True))
    half, running = sum(weights) / 2, 0.0
    for value, weight in pairs:
        running += weight
        if running >= half - 1e-12:
            return value
    return pairs[-1][0]


def _winner_from_preference(preference: float) -> str:
    if abs(preference - 0.5) < 1e-9:
        return "tie"
    return "A" if preference > 0.5 else "B"


def _scores(standing: list[JudgeVerdict]) -> list[float]:
    """The scores of standing pointwise verdicts (a verdict stands only with one)."""
    return [v.score for v in standing if v.score is not None]


def _mean_score(standing: list[JudgeVerdict]) -> float:
    total = sum(v.weight for v in standing)
    return sum(s * v.weight for s, v in zip(_scores(standing), standing, strict=True)) / total


def _median_score(standing: list[JudgeVerdict]) -> float:
    return _weighted_median(_scores(standing), [v.weight for v in standing])


def _preference_winner(standing: list[JudgeVerdict], tallies: dict[str, float]) -> str:
    total = sum(v.weight for v in standing)
    preferences = [v.preference for v in standing if v.preference is not None]
    return _winner_from_preference(sum(p * v.weight for p, v in zip(preferences, standing,
                                                                    strict=True)) / total)


def _plurality_winner(standing: list[JudgeVerdict], tallies: dict[str, float]) -> str:
    return max(tallies, key=lambda winner: tallies[winner])


@dataclass(frozen=True)
class Ensemble:
    """One way of combining judges (`voting.ensemble`): the pointwise score and the
    pairwise winner of the standing verdicts (by judge weight; `tallies` are the weights
    behind each winner), whether every judge must stand and agree, and whether the judges'
    weights are first scaled by their agreement with people
    (`rlaif_ray.review.calibration.calibrated_weights`)."""

    score: Callable[[list[JudgeVerdict]], float]
    winner: Callable[[list[JudgeVerdict], dict[str, float]], str]
    unanimous: bool = False
    calibrated: bool = False


ENSEMBLES = {
    "mean": Ensemble(_mean_score, _preference_winner),
    "majority": Ensemble(_median_score, _plurality_winner),
    "all_agree": Ensemble(_mean_score, _preference_winner, unanimous=True),
    "calibrated": Ensemble(_mean_score, _preference_winner, calibrated=True),
}


@dataclass(frozen=True)
class Consensus:
    """What the standing judges decided on one item (a score, or a winner), how far apart
    they were (0: not at all) and whether they agreed."""

    score: float | None
    winner: str | None
    disagreement: float
    agree: bool


def score_consensus(standing: list[JudgeVerdict], method: Ensemble,
                    max_score_spread: float) -> Consensus:
    """Pointwise: the ensemble's score; the judges agree within `max_score_spread`."""
    scores = _scores(standing)
    disagreement = max(scores) - min(scores)
    return Consensus(method.score(standing), None, disagreement,
                     disagreement <= max_score_spread + 1e-9)


def winner_consensus(standing: list[JudgeVerdict], method: Ensemble,
                     max_score_spread: float) -> Consensus:
    """Pairwise: the ensemble's winner; the judges agree when they name one winner."""
    tallies: dict[str, float] = defaultdict(float)
    for v in standing:
        if v.winner is not None:  # a standing pairwise verdict has one
            tallies[v.winner] += v.weight
    winner = method.winner(standing, tallies)
    total_weight = sum(v.weight for v in standing)
    return Consensus(None, winner, 1.0 - tallies.get(winner, 0.0) / total_weight,
                     len(tallies) == 1)


ConsensusRule = Callable[[list[JudgeVerdict], Ensemble, float], Consensus]


def combine(verdicts: list[JudgeVerdict], consensus: ConsensusRule, ensemble: str,
            max_score_spread: float, confidence_threshold: float) -> EnsembleVerdict:
    """One item's verdict from its judges' verdicts: what they decided by the rubric
    mode's `consensus`, combined by the `ensemble` named."""
    method = ENSEMBLES[ensemble]
    standing = [v for v in verdicts if v.stands]
    if not standing:
        status = Status.ABSTAINED if all(v.valid == 0 for v in verdicts) else Status.DROPPED
        return EnsembleVerdict(status, 0.0, 0.0)
    total_weight = sum(v.weight for v in standing)
    decided = consensus(standing, method, max_score_spread)
    score, winner, disagreement = decided.score, decided.winner, decided.disagreement
    if method.unanimous and (len(standing) < len(verdicts) or not decided.agree):
        return EnsembleVerdict(Status.DROPPED, 0.0, 1.0 - disagreement, score, winner,
                               len(standing))
    judge_confidence = sum(v.confidence * v.weight for v in standing) / total_weight
    coverage = total_weight / sum(v.weight for v in verdicts)
    confidence = judge_confidence * (1.0 - disagreement) * coverage
    status = Status.KEPT if confidence >= confidence_threshold else Status.DROPPED
    return EnsembleVerdict(status, confidence, 1.0 - disagreement, score, winner, len(standing))
