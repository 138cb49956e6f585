"""Judges combined into one verdict: weights, majority, all-agree, pairwise ensembles,
confidence and coverage. Pure logic, no Ray."""

import pytest
from scripted_votes import jv

from rlaif_ray.judge.ensemble import combine
from rlaif_ray.judge.modes import rubric_mode

# What the judges decide in each mode: a score, or a winner.
POINTWISE, PAIRWISE = (rubric_mode(mode).consensus for mode in ("pointwise", "pairwise"))


def test_mean_ensemble_weights_and_disagreement_lowers_confidence():
    verdict = combine([jv(0.8, weight=3), jv(0.4, weight=1)], POINTWISE, "mean", 1.0, 0.0)
    assert verdict.score == pytest.approx(0.7)
    assert verdict.confidence == pytest.approx(1 - 0.4)
    assert verdict.status == "kept"


def test_majority_is_weighted_median():
    verdict = combine([jv(0.9), jv(0.2), jv(0.3)], POINTWISE, "majority", 1.0, 0.0)
    assert verdict.score == pytest.approx(0.3)


def test_all_agree_drops_on_disagreement_or_missing_judge():
    assert combine([jv(0.8), jv(0.1)], POINTWISE, "all_agree", 0.3, 0.0).status == "dropped"
    assert combine([jv(0.8), jv(0.7, stands=False)], POINTWISE, "all_agree", 0.3,
                   0.0).status == "dropped"
    assert combine([jv(0.8), jv(0.7)], POINTWISE, "all_agree", 0.3, 0.0).status == "kept"


def test_pairwise_ensembles():
    judges = [jv(winner="A", preference=1.0, weight=2), jv(winner="B", preference=0.0)]
    mean = combine(judges, PAIRWISE, "mean", 0.3, 0.0)
    assert mean.winner == "A" and mean.agreement == pytest.approx(2 / 3)
    assert combine(judges, PAIRWISE, "majority", 0.3, 0.0).winner == "A"
    assert combine(judges, PAIRWISE, "all_agree", 0.3, 0.0).status == "dropped"


def test_low_confidence_goes_to_review_and_no_standing_judge_abstains():
    assert combine([jv(0.8, confidence=0.2)], POINTWISE, "mean", 1, 0.5).status == "dropped"
    assert combine([jv(stands=False, valid=0)], POINTWISE, "mean", 1, 0.5).status == \
        "abstained"
    assert combine([jv(stands=False, valid=2)], POINTWISE, "mean", 1, 0.5).status == \
        "dropped"


def test_unstanding_judge_reduces_coverage():
    verdict = combine([jv(0.8), jv(0.1, stands=False)], POINTWISE, "mean", 1.0, 0.0)
    assert verdict.score == pytest.approx(0.8) and verdict.confidence == pytest.approx(0.5)
