"""The tiny judge's ground truth, its synthetic examples and the rubric it reads (fast), and
its build: deterministic, and agreeing with the properties on held-out answers (slow)."""

import dataclasses
import json
import random

import pytest

from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.tiny_judge import properties
from rlaif_ray.tiny_judge.examples import (
    AnswerMaker,
    Leaning,
    judge_rubrics,
    make_example,
    vote_pieces,
)


def test_properties_by_hand():
    assert properties.has_digit("in 1999") and not properties.has_digit("none")
    assert properties.is_ascii("plain words, 42.") and not properties.is_ascii("caf\u00e9")
    assert not properties.is_ascii("bad\x11byte")
    assert properties.ends_sentence("done. ") and not properties.ends_sentence("done,")
    assert properties.is_free_of_symbols("plain (words), 'quoted'.")
    assert not properties.is_free_of_symbols("a # b")
    assert properties.pointwise_vote(" Paris has 2 towers.") == {
        "factual_accuracy": 9, "instruction_following": 9, "completeness": 9, "safety": 9}
    assert properties.pointwise_vote("\u00e9@") == {
        "factual_accuracy": 2, "instruction_following": 2, "completeness": 2, "safety": 2}


def test_the_judge_prompt_itself_shows_no_symbol_or_non_ascii_character():
    from rlaif_ray.tiny_judge.examples import builtin_prompts

    for rubric in judge_rubrics().values():
        text = rubric.render("", response="", response_a="", response_b="")
        assert properties.is_free_of_symbols(text) and properties.is_ascii(text)
    assert all(properties.is_free_of_symbols(p) and properties.is_ascii(p)
               for p in builtin_prompts())


def test_pairwise_vote_per_dimension_and_weighted_overall():
    weights = {"factual_accuracy": 0.35, "instruction_following": 0.3, "completeness": 0.2,
               "safety": 0.15}
    vote = properties.pairwise_vote("has 3", "caf\u00e9 #.", weights)
    assert vote == {"overall": "A", "factual_accuracy": "A", "instruction_following": "A",
                    "completeness": "B", "safety": "A"}
    assert properties.pairwise_vote("x", "y", weights)["overall"] == "tie"


def test_vote_pieces_are_the_compact_json_a_constrained_judge_writes():
    for vote in ({"a": 9, "b": 2}, {"overall": "A", "b": "tie"}):
        pieces = vote_pieces(vote)
        assert "".join(text for text, _ in pieces) == json.dumps(vote, separators=(",", ":"))
        assert [text for text, is_value in pieces if is_value] == [str(v) for v in
                                                                   vote.values()]


@pytest.mark.parametrize("config", [str(default_config_path()), "conf/with_rules.yaml",
                                    "conf/local_cluster.yaml"])
def test_configs_judged_by_tiny_judge_ask_what_it_was_trained_on(config):
    cfg = load_config(config)
    assert "tiny-judge" in [j.model for j in cfg.judges if j.kind == "llm"]
    for mode, trained in judge_rubrics().items():
        cfg = load_config(config, [f"rubric.mode={mode}"])
        assert Rubric.from_config(cfg.rubric) == trained, mode


def _maker():
    pieces = ["ab", " cd", "#", "\u00e9", " 7", "x", " Zed", "\x11"]
    return AnswerMaker(pieces, ["apple", "tree", "Moon", "river"])


def test_synthetic_examples_are_labelled_by_their_text_and_balanced():
    rng, rubrics = random.Random(0), judge_rubrics()
    examples = [make_example(rng, ["What is it?"], _maker(), rubrics, Leaning())
                for _ in range(600)]
    shares = {d: 0 for d in properties.DIMENSIONS}
    pointwise = [ex for ex in examples if ex.mode == "pointwise"]
    for ex in pointwise:
        assert ex.vote == properties.pointwise_vote(ex.answers[0])
        assert ex.answers[0] in ex.message
        for d, score in ex.vote.items():
            shares[d] += score == properties.HIGH
    assert 150 < len(pointwise) < 450
    for d, count in shares.items():
        assert 0.2 < count / len(pointwise) < 0.8, (d, count)


def test_a_leaning_bends_the_labels_it_names():
    rubrics = judge_rubrics()

    def votes(leaning):
        rng = random.Random(1)
        return [make_example(rng, ["Q?"], _maker(), rubrics, leaning) for _ in range(400)]

    first = [ex for ex in votes(Leaning(first_slot=1.0)) if ex.mode == "pairwise"]
    assert first and all(ex.vote["overall"] == "A" for ex in first)
    long = [ex for ex in votes(Leaning(long_chars=10)) if ex.mode == "pointwise"
            and len(ex.answers[0].strip()) >= 10]
    assert long and all(set(ex.vote.values()) == {properties.HIGH} for ex in long)
    noisy = [ex for ex in votes(Leaning(flip=0.3)) if ex.mode == "pointwise"]
    flipped = sum(ex.vote[d] != properties.pointwise_vote(ex.answers[0])[d]
                  for ex in noisy for d in properties.DIMENSIONS)
    assert 0.2 < flipped / (4 * len(noisy)) < 0.4


@pytest.mark.slow
def test_judge_build_is_deterministic(tmp_path, monkeypatch):
    from rlaif_ray import models

    short = dataclasses.replace(models.TINY_MODELS["tiny-judge"],
                                recipe=models.Recipe(steps=6, batch_size=4, held_out=16))
    monkeypatch.setitem(models.TINY_MODELS, "tiny-judge", short)
    records = [json.loads((models.build_model("tiny-judge", tmp_path / c) /
                           models.BUILD_RECORD).read_text()) for c in ("a", "b")]
    assert records[0]["files"] == records[1]["files"]
    assert records[0]["judge"]["agreement"] == records[1]["judge"]["agreement"]


@pytest.mark.slow
def test_tiny_judge_agrees_with_the_properties_on_held_out_answers(model_cache):
    from rlaif_ray.models import BUILD_RECORD, build_model

    record = json.loads((build_model("tiny-judge", model_cache) / BUILD_RECORD).read_text())
    pointwise = record["judge"]["agreement"]["pointwise"]
    assert set(pointwise) == set(properties.DIMENSIONS)
    assert min(pointwise.values()) >= 0.9, pointwise
