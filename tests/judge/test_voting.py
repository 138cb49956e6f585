"""One judge's votes on one item: pairwise requests in both orders and their votes
un-swapped, position bias, thresholds, abstentions, the pointwise spread. Pure logic."""

import pytest
from scripted_votes import DIMS, ONE, PAIR, pair_vote, rubric, scores, vote, voting

from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.judge.votes import parse_reply, requests_for
from rlaif_ray.judge.voting import pairwise_verdict, pointwise_verdict


def test_requests_ask_both_orders_with_answers_swapped():
    r = rubric("pairwise")
    reqs = requests_for(r, [PAIR])
    assert [q.order for q in reqs] == ["AB", "BA"]
    first, second = reqs[0].message, reqs[1].message
    assert first.index("FIRST-TEXT") < first.index("SECOND-TEXT")
    assert second.index("SECOND-TEXT") < second.index("FIRST-TEXT")
    assert [q.order for q in requests_for(r, [PAIR], both_orders=False)] == ["AB"]


def test_ba_votes_are_unswapped():
    assert pair_vote("A", "AB").winner == "A"
    assert pair_vote("A", "BA").winner == "B"
    assert pair_vote("tie", "BA").winner == "tie"
    row = pair_vote("B", "BA")
    assert row.winner == "A" and row.first_slot is False
    assert row.dimension_winners == dict.fromkeys(DIMS, "A")


def test_position_biased_judge_fails_consistency():
    # Always picks the first slot: A in AB order, B's answer (slot A) in BA order.
    votes = [pair_vote("A", "AB"), pair_vote("A", "AB"), pair_vote("A", "BA"),
             pair_vote("A", "BA")]
    verdict = pairwise_verdict("j", 1.0, votes, voting(agreement_threshold=0.75))
    assert verdict.winner == "tie" and verdict.agreement == 0.5 and not verdict.stands
    stats = JudgeStats()
    stats.add_votes(votes)
    assert stats.position_bias == 1.0


def test_consistent_pairwise_votes_stand():
    votes = [pair_vote("A", "AB"), pair_vote("B", "BA"), pair_vote("B", "BA"),
             pair_vote("tie", "AB")]
    verdict = pairwise_verdict("j", 1.0, votes, voting(agreement_threshold=0.75))
    assert verdict.winner == "A" and verdict.agreement == 0.75 and verdict.stands
    assert verdict.preference == pytest.approx((3 + 0.5) / 4)
    assert verdict.confidence == pytest.approx(0.75)


def test_threshold_is_inclusive_and_strict_above():
    votes = [pair_vote("A", "AB"), pair_vote("B", "BA"), pair_vote("A", "BA")]
    assert pairwise_verdict("j", 1.0, votes, voting(agreement_threshold=0.66)).stands
    assert not pairwise_verdict("j", 1.0, votes, voting(agreement_threshold=0.67)).stands


def test_abstentions_lower_confidence_and_too_many_drop():
    good = [pair_vote("A", "AB"), pair_vote("B", "BA")]
    bad = parse_reply(rubric("pairwise"), PAIR, "j", "llm", "r", "AB", 0, "garbage", None)
    verdict = pairwise_verdict("j", 1.0, good + [bad], voting())
    assert verdict.stands and verdict.valid == 2 and verdict.confidence == pytest.approx(2 / 3)
    assert not pairwise_verdict("j", 1.0, good[:1] + [bad, bad], voting(
        min_valid_fraction=0.5)).stands


# --- pointwise consistency -------------------------------------------------------------------

def test_pointwise_spread_threshold():
    r = rubric()
    close = [vote(r, ONE, scores(8, 8, 8, 8)), vote(r, ONE, scores(7, 8, 8, 8))]
    far = [vote(r, ONE, scores(10, 10, 10, 10)), vote(r, ONE, scores(1, 1, 1, 1))]
    kept = pointwise_verdict("j", 1.0, close, voting(max_score_spread=0.1))
    assert kept.stands and kept.score == pytest.approx((7 / 9 + (7 / 9 - 0.35 / 9)) / 2)
    assert kept.dimension_scores["factual_accuracy"] == 7.5
    dropped = pointwise_verdict("j", 1.0, far, voting(max_score_spread=0.1))
    assert not dropped.stands and dropped.agreement == 0.0
