"""Judges against people: the statistics by hand, and a run's report."""

import pytest

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.review.calibration import (
    calibrate,
    calibrated_weights,
    calibration_lines,
    overall_agreement,
)
from rlaif_ray.review.forms import Answer
from rlaif_ray.review.human import HumanVerdicts

DIMENSIONS = tuple(DEFAULT_DIMENSIONS)


def test_each_judge_is_measured_per_dimension_against_people(pointwise_run):
    run_dir, rubric = pointwise_run
    assert calibrate(run_dir) == {}
    HumanVerdicts(run_dir, rubric).record([
        ("page", Answer("0:a", "ann", scores=dict(zip(DIMENSIONS, (2, 5, 6, 9), strict=True)))),
        ("page", Answer("0:b", "ann", scores=dict(zip(DIMENSIONS, (8, 3, 3, 9), strict=True))))])
    report = calibrate(run_dir)
    j1, j2 = report["j1"], report["j2"]
    assert j1["factual_accuracy"]["items"] == 2 and j2["factual_accuracy"]["items"] == 1
    # j1 said 2 and 3 where the person said 2 and 8: bias (0 - 5) / 2.
    assert j1["factual_accuracy"]["bias"] == pytest.approx(-2.5)
    assert j1["factual_accuracy"]["spearman"] == pytest.approx(1.0)  # same order
    assert j2["factual_accuracy"]["bias"] == pytest.approx(7.0)  # 9 vs 2
    assert j1["completeness"]["bias"] == pytest.approx(((5 - 6) + (3 - 3)) / 2)
    assert set(j1) == {*DIMENSIONS, "overall"}
    lines = calibration_lines(report)
    assert all(len(line) <= 80 for line in lines)
    assert any(line.startswith("j1") and "factual_accuracy" in line for line in lines)


def test_pairwise_judges_get_agreement_kappa_and_first_slot_bias(pairwise_run):
    run_dir, rubric = pairwise_run
    HumanVerdicts(run_dir, rubric).record([("page", Answer("0:x", "bo", winner="B"))])
    stats = calibrate(run_dir)["j1"]["overall"]
    assert stats["items"] == 1
    # j1's two votes on x: A and B (most frequent: the first seen, A); the person said B.
    assert stats["agreement"] == 0.0
    assert stats["bias"] == pytest.approx(0.5)  # both votes chose the answer shown first


def test_calibrated_weights_follow_agreement_from_a_prior(pointwise_run):
    run_dir, rubric = pointwise_run
    weights = {"j1": 1.0, "j2": 2.0}
    assert calibrated_weights(run_dir, weights, 0.5, 10) == {"j1": 0.5, "j2": 1.0}
    # The person rates a high on every dimension (overall 10): j1 said 0.4 (below the
    # midpoint, disagrees), j2 0.7 (above, agrees). On b, only j1 voted: 0.3 vs 1 agrees.
    HumanVerdicts(run_dir, rubric).record([
        ("page", Answer("0:a", "ann", scores=dict.fromkeys(DIMENSIONS, 10))),
        ("page", Answer("0:b", "ann", scores=dict.fromkeys(DIMENSIONS, 1)))])
    got = calibrated_weights(run_dir, weights, 0.5, 2)
    assert got["j1"] == pytest.approx(1.0 * (0.5 * 2 + 1) / (2 + 2))  # 1 of 2 agreed
    assert got["j2"] == pytest.approx(2.0 * (0.5 * 2 + 1) / (2 + 1))  # 1 of 1
    assert calibrated_weights(run_dir, {"j3": 1.0}, 0.8, 4) == {"j3": 0.8}  # no items


def test_the_calibrated_ensemble_is_a_choice_of_voting_ensemble(tmp_path):
    from rlaif_ray.config import ConfigError, default_config_path, load_config
    from rlaif_ray.judge.ensemble import ENSEMBLES

    assert ENSEMBLES["calibrated"].calibrated and not ENSEMBLES["mean"].calibrated
    assert load_config(default_config_path(), ["voting.ensemble=calibrated"])
    with pytest.raises(ConfigError, match="voting.calibration_prior"):
        load_config(default_config_path(), ["voting.calibration_prior=0"])


def test_the_stream_weighs_judges_by_their_calibration(pointwise_run):
    from types import SimpleNamespace

    from rlaif_ray.config import default_config_path, load_config
    from rlaif_ray.rollout.stream import judge_weights

    run_dir, rubric = pointwise_run
    judges = [SimpleNamespace(name=n, cfg=SimpleNamespace(weight=1.0)) for n in ("j1", "j2")]
    HumanVerdicts(run_dir, rubric).record([
        ("page", Answer("0:a", "ann", scores=dict.fromkeys(DIMENSIONS, 10)))])
    mean = load_config(default_config_path(), [f"run.dir={run_dir}"])
    assert judge_weights(mean, judges) == {"j1": 1.0, "j2": 1.0}
    calibrated = load_config(default_config_path(), [f"run.dir={run_dir}",
                                                     "voting.ensemble=calibrated"])
    weights = judge_weights(calibrated, judges)
    assert weights["j2"] > weights["j1"]  # j2 agreed with the person on a, j1 did not


def test_overall_agreement_per_judge(pointwise_run):
    run_dir, rubric = pointwise_run
    assert overall_agreement(run_dir) is None
    HumanVerdicts(run_dir, rubric).record([
        ("page", Answer("0:a", "ann", scores=dict.fromkeys(DIMENSIONS, 10)))])
    assert overall_agreement(run_dir) == {"j1": 0.0, "j2": 1.0}  # j1 said 0.4, j2 0.7
