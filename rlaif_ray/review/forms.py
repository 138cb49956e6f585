"""Review forms, one per rubric mode: what a person is shown and answers about one review
item, and how that answer compares with a judge's votes.

A form reads an answer from each place a person gives one (the review page's and the
answers file's JSON fields, a Label Studio annotation), lays out its Label Studio view and
the review page's part (`templates/forms/<mode>.html`), and reduces a judge's votes and a
person's verdict on an item to comparable views for calibration. The review code asks the
form of the rubric's mode (`review_form`) instead of branching on the mode's name; adding a
rubric mode (judge/modes.py) means adding its form here."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from statistics import fmean
from typing import Any, ClassVar
from xml.sax.saxutils import quoteattr

from rlaif_ray.judge.modes import RUBRIC_MODES, SCORE_MAX, SCORE_MIN, WINNERS
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import mean_by_dimension
from rlaif_ray.registry import registered
from rlaif_ray.review.agreement import agrees, cohen_kappa, score_bin, spearman
from rlaif_ray.review.queue import ReviewError

OVERALL = "overall"
WINNER_FIELD = "winner"  # the Label Studio control of a pairwise form


@dataclass(frozen=True)
class Answer:
    """One person's verdict on one queue item: per-dimension scores (pointwise, from the
    page), one overall score (pointwise, from a file) or a winner (pairwise)."""

    review_id: str
    reviewer: str
    scores: dict[str, int] | None = None
    overall: int | None = None
    winner: str | None = None


# A judge's and a person's verdict as the calibration compares them: per key (a dimension,
# or `overall`), a 1-10 score or a winner.
View = dict[str, Any]


def integer_score(value: Any, where: str) -> int:
    """`value` as a score of the rubric's scale (1-10, an integer, `7.0` accepted)."""
    try:
        score = int(value)
    except (TypeError, ValueError):
        score = None
    if (score is None or isinstance(value, bool) or str(value).strip() not in
            (str(score), f"{score}.0") or not SCORE_MIN <= score <= SCORE_MAX):
        raise ReviewError(f"{where} must be an integer score {SCORE_MIN}-{SCORE_MAX}, "
                          f"got {value!r}")
    return score


class ReviewForm:
    """What a person answers about one item of a rubric mode (a subclass per mode)."""

    mode: ClassVar[str]
    # The headers of the answers a person reads (the rubric mode's `answer_fields`).
    headers: ClassVar[tuple[str, ...]]

    def answer(self, review_id: str, who: str, scores: Any, verdict: Any, rubric: Rubric,
               where: str) -> Answer:
        """The answer given as JSON (`scores` per dimension, or `verdict`); a bad field
        raises `ReviewError` naming `where` and the field."""
        raise NotImplementedError

    def verdict(self, answer: Answer, rubric: Rubric) -> dict[str, Any]:
        """The verdict row's fields that hold `answer` (its score, or its winner)."""
        raise NotImplementedError

    def labelstudio_controls(self, rubric: Rubric) -> list[str]:
        """The Label Studio controls (XML lines) that ask for the answer."""
        raise NotImplementedError

    def labelstudio_answer(self, review_id: str, who: str, results: dict[str, Any],
                           rubric: Rubric, where: str) -> Answer:
        """The answer in a Label Studio annotation (`results`: control name -> value)."""
        raise NotImplementedError

    def judge_view(self, votes: list[dict[str, Any]]) -> View:
        """One judge's valid votes on one item reduced to one view."""
        raise NotImplementedError

    def person_view(self, row: dict[str, Any]) -> View:
        """A person's verdict row (`source=human`) as a view."""
        raise NotImplementedError

    def stats(self, pairs: list[tuple[Any, Any]], first_slots: list[float]) -> dict[str, Any]:
        """Agreement of (judge's view, person's) pairs on one key: items, agreement,
        kappa and bias (`first_slots`: the judge's first-slot share per item)."""
        raise NotImplementedError

    def labelstudio_view(self, rubric: Rubric) -> str:
        """The Label Studio labelling config (XML) of this form for `rubric`."""
        shown = ['  <Header value="Prompt"/>', '  <Text name="prompt" value="$prompt"/>']
        for name, header in zip(rubric.kind.answer_fields, self.headers, strict=True):
            shown += [f"  <Header value={quoteattr(header)}/>",
                      f'  <Text name="{name}" value="${name}"/>']
        return "<View>\n" + "\n".join(shown + self.labelstudio_controls(rubric)) + "\n</View>\n"


def _on_scale(share: float) -> float:
    """A 0-1 score on the rubric's 1-10 scale."""
    return SCORE_MIN + share * (SCORE_MAX - SCORE_MIN)


class PointwiseForm(ReviewForm):
    """A score per rubric dimension for one answer (or one overall score, from a file)."""

    mode = "pointwise"
    headers = ("Answer",)

    def answer(self, review_id: str, who: str, scores: Any, verdict: Any, rubric: Rubric,
               where: str) -> Answer:
        if scores in (None, "", {}):
            return Answer(review_id, who, overall=integer_score(verdict, f"{where}: verdict"))
        if isinstance(scores, str):
            try:
                scores = json.loads(scores)
            except json.JSONDecodeError:
                raise ReviewError(f"{where}: scores is not a JSON object") from None
        if not isinstance(scores, dict) or set(scores) != set(rubric.dimensions):
            raise ReviewError(f"{where}: scores must give each rubric dimension "
                              f"{list(rubric.dimensions)}, got {scores!r}")
        return Answer(review_id, who, scores={
            d: integer_score(scores[d], f"{where}: scores.{d}") for d in rubric.dimensions})

    def verdict(self, answer: Answer, rubric: Rubric) -> dict[str, Any]:
        if answer.scores is not None:
            score = rubric.overall(rubric.normalise(answer.scores))
            dimensions = {d: float(s) for d, s in answer.scores.items()}
        else:
            assert answer.overall is not None
            score = (answer.overall - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
            dimensions = None
        return {"score": score, "reward": score, "dimension_scores": dimensions}

    def labelstudio_controls(self, rubric: Rubric) -> list[str]:
        return [f"  <Header value={quoteattr(d)}/>\n  <Rating name={quoteattr(d)} "
                f'toName="response" maxRating="{SCORE_MAX}" required="true"/>'
                for d in rubric.dimensions]

    def labelstudio_answer(self, review_id: str, who: str, results: dict[str, Any],
                           rubric: Rubric, where: str) -> Answer:
        missing = [d for d in rubric.dimensions if "rating" not in (results.get(d) or {})]
        if missing:
            raise ReviewError(f"{where}: no rating for {missing}")
        scores = {}
        for d in rubric.dimensions:
            rating = results[d]["rating"]
            if not isinstance(rating, int) or isinstance(rating, bool) or \
                    not 1 <= rating <= SCORE_MAX:
                raise ReviewError(f"{where}: rating of {d} must be 1-{SCORE_MAX}, "
                                  f"got {rating!r}")
            scores[d] = rating
        return Answer(review_id, who, scores=scores)

    def judge_view(self, votes: list[dict[str, Any]]) -> View:
        view = mean_by_dimension(vote["scores"] or {} for vote in votes)
        view[OVERALL] = _on_scale(fmean(v["overall"] for v in votes))
        return view

    def person_view(self, row: dict[str, Any]) -> View:
        view = dict(row["dimension_scores"] or {})
        view[OVERALL] = _on_scale(row["score"])
        return view

    def stats(self, pairs: list[tuple[Any, Any]], first_slots: list[float]) -> dict[str, Any]:
        judge, human = [p[0] for p in pairs], [p[1] for p in pairs]
        return {"items": len(pairs), "agreement": fmean(agrees(j, h) for j, h in pairs),
                "spearman": spearman(judge, human),
                "kappa": cohen_kappa([score_bin(s) for s in judge],
                                     [score_bin(s) for s in human]),
                "bias": fmean(j - h for j, h in pairs)}


class PairwiseForm(ReviewForm):
    """A winner (A, B or tie) between two answers to one prompt. Label Studio asks it with
    one `Choices` control: its `Pairwise` tag has no tie."""

    mode = "pairwise"
    headers = ("Answer A", "Answer B")

    def answer(self, review_id: str, who: str, scores: Any, verdict: Any, rubric: Rubric,
               where: str) -> Answer:
        if verdict not in WINNERS:
            raise ReviewError(f"{where}: verdict must be one of {list(WINNERS)}, "
                              f"got {verdict!r}")
        return Answer(review_id, who, winner=verdict)

    def verdict(self, answer: Answer, rubric: Rubric) -> dict[str, Any]:
        return {"winner": answer.winner}

    def labelstudio_controls(self, rubric: Rubric) -> list[str]:
        choices = "".join(f'<Choice value="{w}"/>' for w in WINNERS)
        return [f'  <Choices name="{WINNER_FIELD}" toName="prompt" choice="single" '
                f'required="true">{choices}</Choices>']

    def labelstudio_answer(self, review_id: str, who: str, results: dict[str, Any],
                           rubric: Rubric, where: str) -> Answer:
        picked = (results.get(WINNER_FIELD) or {}).get("choices") or []
        if len(picked) != 1 or picked[0] not in WINNERS:
            raise ReviewError(f"{where}: {WINNER_FIELD} must be one choice of "
                              f"{list(WINNERS)}, got {picked!r}")
        return Answer(review_id, who, winner=picked[0])

    def judge_view(self, votes: list[dict[str, Any]]) -> View:
        return {OVERALL: Counter(v["winner"] for v in votes).most_common(1)[0][0],
                "first_slot": fmean(bool(v["first_slot"]) for v in votes)}

    def person_view(self, row: dict[str, Any]) -> View:
        return {OVERALL: row["winner"]}

    def stats(self, pairs: list[tuple[Any, Any]], first_slots: list[float]) -> dict[str, Any]:
        judge, human = [p[0] for p in pairs], [p[1] for p in pairs]
        return {"items": len(pairs), "agreement": fmean(agrees(j, h) for j, h in pairs),
                "kappa": cohen_kappa(judge, human),
                "bias": fmean(first_slots) - 0.5}  # > 0: picks the answer shown first more


REVIEW_FORMS: dict[str, ReviewForm] = {form.mode: form
                                       for form in (PointwiseForm(), PairwiseForm())}


def review_form(mode: str) -> ReviewForm:
    """The review form of rubric mode `mode`."""
    return registered(REVIEW_FORMS, mode, "review form of rubric mode")


def item_form(item_kind: str) -> ReviewForm:
    """The review form of the rubric mode whose items are `item_kind` (a verdict row's)."""
    modes = {str(mode.item_kind): name for name, mode in RUBRIC_MODES.items()}
    return review_form(registered(modes, item_kind, "item kind"))
