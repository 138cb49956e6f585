"""Rule judges' checks and the judging registries' errors. Pure logic, no Ray."""

import pytest
from omegaconf import OmegaConf

from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.rules import rule_score


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
