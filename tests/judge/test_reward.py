"""Pairwise rewards: win rates, Bradley-Terry, and the response rows a pairwise
batch's verdicts give. Pure logic, no Ray."""

from omegaconf import OmegaConf
from records import candidate

from rlaif_ray.config import load_config
from rlaif_ray.judge.reward import bradley_terry, win_rates
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.judge.verdicts import verdicts_for
from rlaif_ray.judge.votes import judge_items, rule_votes


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
    cands = [candidate(k, response=k) for k in "abc"]
    items = judge_items(r, cands)
    assert [i.item_id for i in items] == ["a|b", "a|c", "b|c"]
    checks = [OmegaConf.create({"type": "contains", "pattern": "a", "weight": 1.0})]
    votes = rule_votes(r, items, "rules", checks)
    rows = verdicts_for(items, votes, {"rules": 1.0}, cfg, JudgeStats())
    responses = {row.response_id: row for row in rows if row.item_kind == "response"}
    assert responses["a"].reward == 1.0
    assert responses["b"].reward == responses["c"].reward == 0.25
