"""What judging costs: tokens counted per judge from its votes, priced per million tokens,
summed over iterations, per kept verdict and per DPO pair, and said in lines that fit."""

import pytest
from records import vote

from rlaif_ray.config import load_config
from rlaif_ray.console import judging_cost_lines
from rlaif_ray.judge.cost import add_usage, cost_per, judge_prices, priced, total_cost
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.metrics import judging_cost


def metered(judge, prompt, completion):
    return vote(judge, prompt_tokens=prompt, completion_tokens=completion)


def test_votes_add_up_to_each_judges_usage_across_batches():
    first, second = JudgeStats(), JudgeStats()
    first.add_votes([metered("big", 900, 40), metered("big", 0, 38),
                     metered("small", 300, 20)])
    second.add_votes([metered("big", 880, 41), vote("rules", judge_kind="rule")])
    first.merge(second)
    assert first.judge_usage == {
        "big": {"votes": 3, "prompt_tokens": 1780, "completion_tokens": 119},
        "small": {"votes": 1, "prompt_tokens": 300, "completion_tokens": 20},
        "rules": {"votes": 1, "prompt_tokens": 0, "completion_tokens": 0}}


def test_priced_judges_cost_tokens_times_price_per_million():
    cfg = load_config("conf/default.yaml", [
        "judges=[{name: big, kind: http, base_url: 'http://x/v1', "
        "price_per_mtok: {input: 2.5, output: 10}}, {name: rules, kind: rule, "
        "checks: [{type: regex, pattern: 'a'}]}]"])
    prices = judge_prices(cfg.judges)
    assert prices == {"big": {"input": 2.5, "output": 10.0}, "rules": None}
    usage = priced({"big": {"votes": 4, "prompt_tokens": 2_000_000, "completion_tokens": 100_000},
                    "rules": {"votes": 4, "prompt_tokens": 0, "completion_tokens": 0}}, prices)
    assert usage["big"]["cost"] == pytest.approx(2 * 2.5 + 0.1 * 10)
    assert usage["rules"]["cost"] is None  # unpriced, not free
    assert total_cost(usage) == pytest.approx(6.0)
    assert cost_per(usage, 3) == pytest.approx(2.0)
    assert cost_per(usage, 0) is None
    assert cost_per({"rules": usage["rules"]}, 3) is None


def test_a_runs_cost_sums_its_iterations():
    rows = [{"judge_usage": {"big": {"votes": 2, "prompt_tokens": 10, "completion_tokens": 5,
                                     "cost": 0.5}},
             "verdicts_kept": 2},
            {"judge_usage": {"big": {"votes": 3, "prompt_tokens": 20, "completion_tokens": 6,
                                     "cost": 1.0}},
             "verdicts_kept": 4}]
    run = judging_cost(rows)
    assert run["judge_usage"] == add_usage(r["judge_usage"] for r in rows) == {
        "big": {"votes": 5, "prompt_tokens": 30, "completion_tokens": 11, "cost": 1.5}}
    assert run["verdicts_kept"] == 6 and run["cost_per_kept_verdict"] == pytest.approx(0.25)


@pytest.mark.parametrize("price", ["-1", "cheap"])
def test_a_bad_price_names_its_key(price):
    from rlaif_ray.errors import ConfigError

    with pytest.raises(ConfigError, match=r"judges\[0\]\.price_per_mtok\.input"):
        load_config("conf/default.yaml", [f"judges.0.price_per_mtok={{input: {price}}}"])


def test_cost_lines_fit_the_console_and_stay_silent_for_rules():
    usage = {"qwen2.5-72b-instruct": {"votes": 123_456, "prompt_tokens": 98_765_432,
                                      "completion_tokens": 7_654_321, "cost": 123.45}}
    lines = judging_cost_lines(usage, 40_000, 9_000)
    assert lines == ["judge qwen2.5-72b-instruct: 123,456 votes; tokens 98,765,432 in, "
                     "7,654,321 out",
                     "judging cost 123.5 (0.00309 per kept verdict, 0.0137 per DPO pair)"]
    assert all(len(line) <= 80 for line in lines)
    rules = {"rules": {"votes": 9, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}}
    assert judging_cost_lines(rules, 9) == []
