"""The rubric modes as objects: each mode's requests, schema and judged items agree with
one another, and an unknown mode is named with the valid ones. Pure logic, no Ray."""

from collections import Counter

import pytest
from records import candidate

from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.modes import RUBRIC_MODES, rubric_mode
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.judge.verdicts import verdicts_for
from rlaif_ray.judge.votes import rule_votes

CANDIDATES = [candidate(f"p{p}-r{r}", f"p{p}", f"Q{p}", f"answer {r}" if r % 2 else f"{r} words")
              for p in range(2) for r in range(4)]


def config(mode, *overrides):
    return load_config(None, [f"rubric.mode={mode}", *overrides])


@pytest.mark.parametrize("mode", sorted(RUBRIC_MODES))
@pytest.mark.parametrize("both_orders", [True, False])
def test_a_prompt_makes_the_requests_its_mode_counts(mode, both_orders):
    """`requests_per_prompt` (which sizes the stream's in-flight bound) is what `requests`
    renders for a prompt's answers."""
    rubric = Rubric.from_config(config(mode).rubric)
    requests = rubric.kind.requests(rubric, rubric.kind.items(CANDIDATES), both_orders)
    per_prompt = Counter(r.item_id.split("-")[0] for r in requests)
    assert set(per_prompt.values()) == {rubric.kind.requests_per_prompt(4, both_orders)}
    assert all(r.message.count("Q") >= 1 for r in requests)


@pytest.mark.parametrize("mode", sorted(RUBRIC_MODES))
def test_the_schema_admits_exactly_the_values_a_vote_may_hold(mode):
    kind = rubric_mode(mode)
    schema = kind.value_schema
    allowed = (schema["enum"] if "enum" in schema
               else range(schema["minimum"], schema["maximum"] + 1))
    assert all(kind.valid_value(v) for v in allowed)
    assert not any(kind.valid_value(v) for v in (0, 11, True, "C", 5.5, None))


@pytest.mark.parametrize("mode", sorted(RUBRIC_MODES))
def test_verdicts_are_of_the_modes_item_kind_and_reward_every_response(mode):
    """A rule judge's votes through the verdicts: the judged items carry the mode's
    `item_kind`, and every response ends with a verdict of its own (pairwise: from its
    pairs) whose reward is set when it stands."""
    cfg = config(mode)
    rubric = Rubric.from_config(cfg.rubric)
    items = rubric.kind.items(CANDIDATES)
    checks = load_config(None, ["judges=[{name: r, kind: rule, checks: [{type: regex, "
                                "pattern: '^answer'}]}]"]).judges[0].checks
    rows = verdicts_for(items, rule_votes(rubric, items, "r", checks), {"r": 1.0}, cfg,
                        JudgeStats())
    judged = [r for r in rows if r.item_kind == rubric.kind.item_kind]
    assert len(judged) == len(items)
    responses = {r.item_id: r for r in rows if r.item_kind == "response"}
    assert set(responses) == {c.response_id for c in CANDIDATES}
    rewards = {i: r.reward for i, r in responses.items()}
    # "answer ..." passes the check and beats "... words" in every pair it is in.
    assert min(rewards[f"p{p}-r{r}"] for p in range(2) for r in (1, 3)) > max(
        rewards[f"p{p}-r{r}"] for p in range(2) for r in (0, 2))


@pytest.mark.parametrize("mode", sorted(RUBRIC_MODES))
def test_a_review_item_shows_as_many_answers_as_the_mode_judges_at_once(mode):
    """The review queue and Label Studio show a judged item's answers under the mode's
    `answer_fields`: one for a response, two for a pair (whose verdict then moves the
    rewards of the prompt's other answers too: `relative_rewards`)."""
    kind = rubric_mode(mode)
    item = kind.items(CANDIDATES)[0]
    shown = [answer for answer in (item.response_a, item.response_b) if answer]
    assert len(kind.answer_fields) == len(shown)
    assert kind.relative_rewards == (len(shown) > 1)


def test_an_unknown_mode_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match="'listwise'; choose one of pointwise, pairwise"):
        rubric_mode("listwise")
    with pytest.raises(ConfigError, match="rubric.mode.*pointwise, pairwise"):
        config("listwise")
