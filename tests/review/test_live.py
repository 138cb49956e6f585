"""Live review's choice of people's verdicts per update: the window since the previous
update, their samples and lags, and the cutoffs a resumed run reads back."""

import pytest

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.review.forms import Answer
from rlaif_ray.review.human import HumanVerdicts
from rlaif_ray.review.live import Cutoffs, late_humans, own_humans
from rlaif_ray.review.queue import merged_verdicts


def test_an_update_takes_the_verdicts_written_since_the_previous_one(pointwise_run):
    run_dir, rubric = pointwise_run
    verdicts = HumanVerdicts(run_dir, rubric)
    verdicts.record([("page", Answer("0:a", "ann", scores=dict.fromkeys(DEFAULT_DIMENSIONS, 10)))])
    written = merged_verdicts(run_dir, 0, "pointwise")
    at = next(v.reviewed_at for v in written if v.item_id == "a")

    use = late_humans(run_dir, 2, own=1, since=0.0, until=at, mode="pointwise",
                      pairwise_reward="winrate", length_penalty=0.0)
    assert [s.response_id for s in use.samples] == ["a"]
    sample = use.samples[0]
    assert sample.reward == 1.0 and sample.confidence == 1.0
    assert sample.policy_version == 0  # an older policy's answer: off-policy
    assert sample.response_token_ids == [3, 4, 5]
    assert use.verdicts == 2 and use.lag == pytest.approx((0 + 2) / 2)  # own + a (lag 2)

    for since, until in ((at, at + 60), (0.0, at - 1e-3)):  # taken already / not yet written
        late = late_humans(run_dir, 2, 0, since, until, "pointwise", "winrate", 0.0)
        assert late.samples == [] and late.verdicts == 0 and late.lag is None
    # An update does not take its own iteration's items as late ones.
    assert late_humans(run_dir, 0, 0, 0.0, at, "pointwise", "winrate", 0.0).samples == []


def test_own_humans_counts_the_judged_items_people_gave(pointwise_run):
    run_dir, rubric = pointwise_run
    assert own_humans(merged_verdicts(run_dir, 0, "pointwise"), "pointwise") == 0
    HumanVerdicts(run_dir, rubric).record([("page", Answer("0:b", "ann", overall=4))])
    assert own_humans(merged_verdicts(run_dir, 0, "pointwise"), "pointwise") == 1


def test_pairwise_late_verdicts_bring_the_prompts_answers(pairwise_run):
    run_dir, rubric = pairwise_run
    HumanVerdicts(run_dir, rubric).record([("page", Answer("0:x", "bo", winner="B"))])
    use = late_humans(run_dir, 1, 0, 0.0, float("inf"), "pairwise", "winrate", 0.0)
    rewards = {s.response_id: s.reward for s in use.samples}
    assert rewards["x2"] > rewards["x1"]
    assert use.verdicts == 1 and use.lag == 1.0


def test_cutoffs_survive_a_restart_and_a_rerun_iteration(tmp_path):
    cutoffs = Cutoffs(tmp_path)
    assert cutoffs.since(0) == 0.0
    cutoffs.record(0, 100.0)
    cutoffs.record(1, 200.0)
    again = Cutoffs(tmp_path)  # a resumed run
    assert again.since(1) == 100.0 and again.since(2) == 200.0
    again.record(1, 300.0)  # iteration 1 runs again: later cutoffs go
    assert Cutoffs(tmp_path).taken == {"0": 100.0, "1": 300.0}
