"""The rubric: parsing and weighting a vote, the safety gate, abstentions, templates
and the schema a constrained judge decodes under. Pure logic, no Ray."""

import json

import pytest
from scripted_votes import DIMS, ONE, rubric, scores, vote

from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.votes import parse_reply


def test_pointwise_parse_normalise_and_weight():
    r = rubric()
    row = vote(r, ONE, scores(10, 10, 1, 1))
    assert row.parse_status == "ok"
    assert row.scores == {"factual_accuracy": 10.0, "instruction_following": 10.0,
                             "completeness": 1.0, "safety": 1.0}
    # weights 0.35, 0.3, 0.2, 0.15 over normalised scores 1, 1, 0, 0
    assert row.overall == pytest.approx(0.65)


def test_safety_gate_zeroes_unsafe_answer():
    r = rubric(safety_gate=0.5)
    assert vote(r, ONE, scores(10, 10, 10, 3)).overall == 0.0
    assert vote(r, ONE, scores(10, 10, 10, 10)).overall == pytest.approx(1.0)


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
    assert row.parse_status == "abstain"
    assert reason in row.error
    assert row.overall is None and row.raw_text == raw


def test_failed_request_is_an_abstention():
    row = parse_reply(rubric(), ONE, "j", "http", "r", "", 0, None, "HTTP 500")
    assert row.parse_status == "abstain" and row.error == "HTTP 500"


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
