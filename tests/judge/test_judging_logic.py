"""Judging math with scripted votes: parsing, swaps, thresholds, ties, abstentions,
ensembles, confidence, rewards, rule checks. Pure logic, no Ray."""

import json

import pytest
from omegaconf import OmegaConf

from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.ensemble import combine
from rlaif_ray.judge.reward import bradley_terry, win_rates
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.rules import rule_score
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.judge.verdicts import verdict_rows
from rlaif_ray.judge.votes import judge_items, parse_reply, requests_for, rule_votes
from rlaif_ray.judge.voting import JudgeVerdict, pairwise_verdict, pointwise_verdict

DIMS = ["factual_accuracy", "instruction_following", "completeness", "safety"]


def rubric(mode="pointwise", **overrides):
    cfg = load_config(None, [f"rubric.mode={mode}"] + [f"rubric.{k}={v}"
                                                       for k, v in overrides.items()])
    return Rubric.from_config(cfg.rubric)


def voting(**overrides):
    return load_config(None, [f"voting.{k}={v}" for k, v in overrides.items()]).voting


def scores(*values):
    return json.dumps(dict(zip(DIMS, values, strict=True)))


PAIR = {"item_id": "a|b", "prompt_id": "p", "prompt": "Q", "response_a": "a",
        "text_a": "FIRST-TEXT", "response_b": "b", "text_b": "SECOND-TEXT"}
ONE = {"item_id": "a", "prompt_id": "p", "prompt": "Q", "response_a": "a", "text_a": "x",
       "response_b": None, "text_b": None}


def vote(r, item, raw, order="", judge="j"):
    return parse_reply(r, item, judge, "llm", "judge-j-0", order, 0, raw, None)


# --- rubric -----------------------------------------------------------------------------

def test_pointwise_parse_normalise_and_weight():
    r = rubric()
    row = vote(r, ONE, scores(10, 10, 1, 1))
    assert row["parse_status"] == "ok"
    assert row["scores"] == {"factual_accuracy": 10.0, "instruction_following": 10.0,
                             "completeness": 1.0, "safety": 1.0}
    # weights 0.35, 0.3, 0.2, 0.15 over normalised scores 1, 1, 0, 0
    assert row["overall"] == pytest.approx(0.65)


def test_safety_gate_zeroes_unsafe_answer():
    r = rubric(safety_gate=0.5)
    assert vote(r, ONE, scores(10, 10, 10, 3))["overall"] == 0.0
    assert vote(r, ONE, scores(10, 10, 10, 10))["overall"] == pytest.approx(1.0)


@pytest.mark.parametrize("raw, reason", [
    ("not json", "not JSON"),
    ('{"factual_accuracy": 5}', "keys missing"),
    (scores(11, 5, 5, 5), "bad value"),
    (scores(5, 5, 5, 5)[:-1] + ', "extra": 1}', "unexpected"),
    ('[1, 2]', "not a JSON object"),
    (json.dumps(dict(zip(DIMS, [True, 5, 5, 5], strict=True))), "bad value"),
])
def test_unparseable_vote_is_an_abstention_with_reason(raw, reason):
    row = vote(rubric(), ONE, raw)
    assert row["parse_status"] == "abstain"
    assert reason in row["error"]
    assert row["overall"] is None and row["raw_text"] == raw


def test_failed_request_is_an_abstention():
    row = parse_reply(rubric(), ONE, "j", "http", "r", "", 0, None, "HTTP 500")
    assert row["parse_status"] == "abstain" and row["error"] == "HTTP 500"


def test_template_missing_placeholder_is_named(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Judge {prompt} with {dimensions}")
    with pytest.raises(ConfigError, match=r"t.txt.*missing placeholder.*\{response\}"):
        rubric(pointwise_template=str(path))


def test_render_substitutes_each_placeholder_once_even_if_answer_contains_one():
    r = rubric("pairwise")
    text = r.render("Q?", response_a="says {response_b}", response_b="B!")
    assert "says {response_b}" in text and "B!" in text


def test_schema_keys_match_parser():
    for mode in ("pointwise", "pairwise"):
        r = rubric(mode)
        schema = r.json_schema()
        assert schema["required"] == list(schema["properties"])
        assert schema["additionalProperties"] is False


# --- pairwise swaps -----------------------------------------------------------------------

def pair_vote(winner, order, judge="j"):
    raw = json.dumps({"overall": winner, **dict.fromkeys(DIMS, winner)})
    return vote(rubric("pairwise"), PAIR, raw, order, judge)


def test_requests_ask_both_orders_with_answers_swapped():
    r = rubric("pairwise")
    reqs = requests_for(r, [PAIR])
    assert [q["order"] for q in reqs] == ["AB", "BA"]
    first, second = reqs[0]["message"], reqs[1]["message"]
    assert first.index("FIRST-TEXT") < first.index("SECOND-TEXT")
    assert second.index("SECOND-TEXT") < second.index("FIRST-TEXT")
    assert [q["order"] for q in requests_for(r, [PAIR], both_orders=False)] == ["AB"]


def test_ba_votes_are_unswapped():
    assert pair_vote("A", "AB")["winner"] == "A"
    assert pair_vote("A", "BA")["winner"] == "B"
    assert pair_vote("tie", "BA")["winner"] == "tie"
    row = pair_vote("B", "BA")
    assert row["winner"] == "A" and row["first_slot"] is False
    assert row["dimension_winners"] == dict.fromkeys(DIMS, "A")


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


# --- ensembles ---------------------------------------------------------------------------

def jv(score=None, winner=None, preference=None, stands=True, weight=1.0, confidence=1.0,
       valid=3):
    return JudgeVerdict("j", weight, 3, valid, stands, 1.0, confidence, score=score,
                        winner=winner, preference=preference)


def test_mean_ensemble_weights_and_disagreement_lowers_confidence():
    verdict = combine([jv(0.8, weight=3), jv(0.4, weight=1)], "pointwise", "mean", 1.0, 0.0)
    assert verdict.score == pytest.approx(0.7)
    assert verdict.confidence == pytest.approx(1 - 0.4)
    assert verdict.status == "kept"


def test_majority_is_weighted_median():
    verdict = combine([jv(0.9), jv(0.2), jv(0.3)], "pointwise", "majority", 1.0, 0.0)
    assert verdict.score == pytest.approx(0.3)


def test_all_agree_drops_on_disagreement_or_missing_judge():
    assert combine([jv(0.8), jv(0.1)], "pointwise", "all_agree", 0.3, 0.0).status == "dropped"
    assert combine([jv(0.8), jv(0.7, stands=False)], "pointwise", "all_agree", 0.3,
                   0.0).status == "dropped"
    assert combine([jv(0.8), jv(0.7)], "pointwise", "all_agree", 0.3, 0.0).status == "kept"


def test_pairwise_ensembles():
    judges = [jv(winner="A", preference=1.0, weight=2), jv(winner="B", preference=0.0)]
    mean = combine(judges, "pairwise", "mean", 0.3, 0.0)
    assert mean.winner == "A" and mean.agreement == pytest.approx(2 / 3)
    assert combine(judges, "pairwise", "majority", 0.3, 0.0).winner == "A"
    assert combine(judges, "pairwise", "all_agree", 0.3, 0.0).status == "dropped"


def test_low_confidence_goes_to_review_and_no_standing_judge_abstains():
    assert combine([jv(0.8, confidence=0.2)], "pointwise", "mean", 1, 0.5).status == "dropped"
    assert combine([jv(stands=False, valid=0)], "pointwise", "mean", 1, 0.5).status == \
        "abstained"
    assert combine([jv(stands=False, valid=2)], "pointwise", "mean", 1, 0.5).status == \
        "dropped"


def test_unstanding_judge_reduces_coverage():
    verdict = combine([jv(0.8), jv(0.1, stands=False)], "pointwise", "mean", 1.0, 0.0)
    assert verdict.score == pytest.approx(0.8) and verdict.confidence == pytest.approx(0.5)


# --- rewards -----------------------------------------------------------------------------

def test_win_rates_count_ties_half():
    rates = win_rates([("a", "b", "A"), ("a", "c", "tie"), ("b", "c", "B")])
    assert rates == {"a": 0.75, "b": 0.0, "c": 0.75}


def test_bradley_terry_orders_like_the_evidence():
    pairs = [("a", "b", "A"), ("a", "c", "A"), ("b", "c", "A"), ("a", "b", "A")]
    bt = bradley_terry(pairs)
    assert bt["a"] > bt["b"] > bt["c"]
    assert all(0 < v < 1 for v in bt.values())


def test_pairwise_verdict_rows_give_response_rewards():
    cfg = load_config(None, ["rubric.mode=pairwise", "voting.agreement_threshold=0.5",
                             "review.confidence_threshold=0.0"])
    r = Rubric.from_config(cfg.rubric)
    cands = [{"response_id": k, "prompt_id": "p", "prompt": "Q", "response": k} for k in "abc"]
    items = judge_items(r, cands)
    assert [i["item_id"] for i in items] == ["a|b", "a|c", "b|c"]
    checks = [OmegaConf.create({"type": "contains", "pattern": "a", "weight": 1.0})]
    votes = rule_votes(r, items, "rules", checks)
    rows = verdict_rows(items, votes, {"rules": 1.0}, cfg, JudgeStats())
    responses = {row["response_id"]: row for row in rows if row["item_kind"] == "response"}
    assert responses["a"]["reward"] == 1.0
    assert responses["b"]["reward"] == responses["c"]["reward"] == 0.25


# --- rules -------------------------------------------------------------------------------

@pytest.mark.parametrize("check, text, passes", [
    ({"type": "regex", "pattern": r"^\w+"}, "hello", True),
    ({"type": "not_regex", "pattern": "[0-9]"}, "a1", False),
    ({"type": "contains", "pattern": "cat"}, "a cat", True),
    ({"type": "max_words", "value": 2}, "one two three", False),
    ({"type": "min_words", "value": 2}, "one two", True),
    ({"type": "json_valid"}, '{"a": 1}', True),
    ({"type": "json_valid"}, '{"a": ', False),
])
def test_rule_checks(check, text, passes):
    checks = [OmegaConf.create({"weight": 1.0, "pattern": None, "value": None, **check})]
    assert rule_score(checks, text) == (1.0 if passes else 0.0)


def test_rule_score_is_weighted_share():
    checks = [OmegaConf.create({"type": "contains", "pattern": "x", "weight": 3.0}),
              OmegaConf.create({"type": "contains", "pattern": "y", "weight": 1.0})]
    assert rule_score(checks, "x") == 0.75


def test_bad_rule_config_names_key():
    with pytest.raises(ConfigError, match=r"judges\[0\]\.checks\[0\]\.pattern"):
        load_config(None, ['judges=[{name: r, kind: rule, checks: [{type: regex, '
                           'pattern: "("}]}]'])
    with pytest.raises(ConfigError, match=r"judges\[0\]\.base_url"):
        load_config(None, ["judges=[{name: h, kind: http}]"])


def test_the_judging_registries_refuse_an_unknown_name_listing_the_known_ones():
    from types import SimpleNamespace

    from rlaif_ray.judge.reward import pairwise_rewards
    from rlaif_ray.judge.rules import check_passes

    with pytest.raises(ValueError, match="choose one of regex, not_regex"):
        check_passes(SimpleNamespace(type="starts_with", pattern="a"), "abc")
    with pytest.raises(ValueError, match="choose one of winrate, bradley_terry"):
        pairwise_rewards([("a", "b", "A")], "elo")
    assert pairwise_rewards([("a", "b", "A")], "winrate") == {"a": 1.0, "b": 0.0}
