"""The review queue as Label Studio tasks, and Label Studio's JSON export read back as
answers: a labelling team reviews in the tool it already runs.

Pointwise: one `Rating` (1-10) per rubric dimension. Pairwise: one `Choices` of A, B and
tie (Label Studio's `Pairwise` tag has no tie). The labelling config to paste into the
project's settings is written next to the tasks (`<tasks>.xml`)."""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import quoteattr

from rlaif_ray.judge.modes import SCORE_MAX, WINNERS
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.review.human import Answer, HumanVerdicts
from rlaif_ray.review.queue import ReviewError, review_queue
from rlaif_ray.storage import Location, StoragePath

WINNER_FIELD = "winner"


def labeling_config(rubric: Rubric) -> str:
    """The Label Studio labelling config (XML) for the rubric's mode and dimensions."""
    if rubric.mode == "pointwise":
        shown = ['  <Header value="Prompt"/>', '  <Text name="prompt" value="$prompt"/>',
                 '  <Header value="Answer"/>', '  <Text name="response" value="$response"/>']
        asked = [f"  <Header value={quoteattr(d)}/>\n  <Rating name={quoteattr(d)} "
                 f'toName="response" maxRating="{SCORE_MAX}" required="true"/>'
                 for d in rubric.dimensions]
    else:
        shown = ['  <Header value="Prompt"/>', '  <Text name="prompt" value="$prompt"/>',
                 '  <Header value="Answer A"/>', '  <Text name="response_a" value="$response_a"/>',
                 '  <Header value="Answer B"/>', '  <Text name="response_b" value="$response_b"/>']
        choices = "".join(f'<Choice value="{w}"/>' for w in WINNERS)
        asked = [f'  <Choices name="{WINNER_FIELD}" toName="prompt" choice="single" '
                 f'required="true">{choices}</Choices>']
    return "<View>\n" + "\n".join(shown + asked) + "\n</View>\n"


def config_path(tasks: Location) -> StoragePath:
    """Where the labelling config of a tasks file goes: beside it, ending `.xml`."""
    tasks = StoragePath.of(tasks)
    return tasks.parent / (tasks.stem + ".xml")


def export_tasks(run_dir: Location, out: Location, rubric: Rubric) -> int:
    """Write the review queue as Label Studio tasks (JSON) to `out` and the labelling
    config beside it (`out` with `.xml`); returns the number of tasks."""
    texts = rubric.kind.answer_fields
    tasks = [{"data": {"review_id": e["review_id"], "prompt": e["prompt"],
                       **{t: e[t] for t in texts}},
              "meta": {"iteration": e["iteration"], "confidence": e["confidence"],
                       "status": e["status"]}}
             for e in review_queue(run_dir, rubric.mode)]
    out = StoragePath.of(out)
    out.write_text(json.dumps(tasks, indent=1))
    config_path(out).write_text(labeling_config(rubric))
    return len(tasks)


def _annotator(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"labelstudio:{who}" if who not in (None, "") else "labelstudio"


def _answer(task: dict[str, Any], rubric: Rubric, where: str) -> Answer | None:
    data = task.get("data") or {}
    review_id = data.get("review_id")
    if not isinstance(review_id, str):
        raise ReviewError(f"{where}: data.review_id is missing (not a task of "
                          "`rlaif-ray review export --format labelstudio`)")
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not done:
        return None
    annotation = done[-1]
    results = {r.get("from_name"): r.get("value") or {} for r in annotation.get("result") or []}
    who = _annotator(annotation)
    if rubric.mode == "pairwise":
        picked = (results.get(WINNER_FIELD) or {}).get("choices") or []
        if len(picked) != 1 or picked[0] not in WINNERS:
            raise ReviewError(f"{where}: {WINNER_FIELD} must be one choice of "
                              f"{list(WINNERS)}, got {picked!r}")
        return Answer(review_id, who, winner=picked[0])
    missing = [d for d in rubric.dimensions if "rating" not in (results.get(d) or {})]
    if missing:
        raise ReviewError(f"{where}: no rating for {missing}")
    scores = {}
    for d in rubric.dimensions:
        rating = results[d]["rating"]
        if not isinstance(rating, int) or isinstance(rating, bool) or \
                not 1 <= rating <= SCORE_MAX:
            raise ReviewError(f"{where}: rating of {d} must be 1-{SCORE_MAX}, got {rating!r}")
        scores[d] = rating
    return Answer(review_id, who, scores=scores)


def import_annotations(run_dir: Location, path: Location, rubric: Rubric) -> int:
    """Merge a Label Studio JSON export of the tasks: each task's last completed
    annotation becomes a human verdict (reviewer `labelstudio:<annotator>`). Every task is
    checked first; nothing is merged if one is bad. Returns the number merged."""
    path = StoragePath.of(path)
    try:
        tasks = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReviewError(f"{path}: malformed JSON: {err.msg}") from None
    if not isinstance(tasks, list):
        raise ReviewError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
    answers = []
    for index, task in enumerate(tasks):
        where = f"{path}: task {index}"
        if not isinstance(task, dict):
            raise ReviewError(f"{where}: expected a JSON object")
        answer = _answer(task, rubric, where)
        if answer is not None:
            answers.append((where, answer))
    return HumanVerdicts(run_dir, rubric).record(answers)


def is_labelstudio_export(path: Location) -> bool:
    """Whether `path` looks like Label Studio's JSON export (a `.json` list)."""
    path = StoragePath.of(path)
    return path.name.endswith(".json") and path.is_file() and \
        path.read_text().lstrip().startswith("[")
