"""Review forms: one per rubric mode, each with its page part; what an answer becomes."""

from importlib import resources

import pytest

from rlaif_ray.judge.modes import RUBRIC_MODES
from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS, Rubric
from rlaif_ray.review.forms import REVIEW_FORMS, Answer, item_form, review_form
from rlaif_ray.review.queue import ReviewError


def rubric(mode: str) -> Rubric:
    n = len(DEFAULT_DIMENSIONS)
    return Rubric(mode, tuple(DEFAULT_DIMENSIONS), (1.0,) + (0.0,) * (n - 1), ("",) * n, "")


def test_every_rubric_mode_has_a_form_with_its_part_of_the_review_page():
    assert list(REVIEW_FORMS) == list(RUBRIC_MODES)
    templates = resources.files("rlaif_ray.review").joinpath("templates", "forms")
    for mode in RUBRIC_MODES:
        assert templates.joinpath(f"{mode}.html").is_file(), mode
        assert item_form(RUBRIC_MODES[mode].item_kind) is review_form(mode)
    with pytest.raises(ValueError, match="unknown item kind 'triple'; choose one of "
                                         "response, pair"):
        item_form("triple")


def test_a_pointwise_answer_is_a_score_from_its_dimensions_or_its_overall_verdict():
    form, scored = review_form("pointwise"), rubric("pointwise")
    first = next(iter(DEFAULT_DIMENSIONS))  # the only dimension with weight
    scores = {d: 10 if d == first else 1 for d in DEFAULT_DIMENSIONS}
    answer = form.answer("0:a", "ann", scores, None, scored, "line 1")
    assert form.verdict(answer, scored) == {
        "score": 1.0, "reward": 1.0,
        "dimension_scores": {d: float(s) for d, s in scores.items()}}
    answer = form.answer("0:a", "ann", "", "4", scored, "line 1")
    assert answer == Answer("0:a", "ann", overall=4)
    assert form.verdict(answer, scored)["score"] == pytest.approx(3 / 9)
    with pytest.raises(ReviewError, match=r"line 1: scores\.safety must be an integer"):
        form.answer("0:a", "ann", {**scores, "safety": 11}, None, scored, "line 1")


def test_a_pairwise_answer_is_a_winner():
    form, compared = review_form("pairwise"), rubric("pairwise")
    answer = form.answer("0:a|b", "bo", None, "tie", compared, "line 2")
    assert form.verdict(answer, compared) == {"winner": "tie"}
    with pytest.raises(ReviewError, match="line 2: verdict must be one of"):
        form.answer("0:a|b", "bo", None, "C", compared, "line 2")


@pytest.mark.parametrize("mode", list(RUBRIC_MODES))
def test_each_forms_page_part_shows_model_text_as_text(mode):
    from rlaif_ray.review.server import page_templates

    part = page_templates().env.get_template(f"forms/{mode}.html").module
    item = dict.fromkeys(RUBRIC_MODES[mode].answer_fields, "<script>alert(1)</script>")
    shown = str(part.answers(item))
    assert "<script>" not in shown
    assert shown.count("&lt;script&gt;alert(1)&lt;/script&gt;") == len(item)
