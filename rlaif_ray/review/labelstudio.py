"""The review queue as Label Studio tasks, and Label Studio's JSON export read back as
answers: a labelling team reviews in the tool it already runs.

Each rubric mode's review form (review/forms.py) lays out the labelling config, written
next to the tasks (`<tasks>.xml`) to paste into the project's settings, and reads an
annotation's result: pointwise one `Rating` (1-10) per rubric dimension, pairwise one
`Choices` of A, B and tie."""

from __future__ import annotations

import json
from typing import Any

from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.review.forms import Answer, review_form
from rlaif_ray.review.human import HumanVerdicts
from rlaif_ray.review.queue import ReviewError, review_queue
from rlaif_ray.storage import Location, StoragePath


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
    config_path(out).write_text(review_form(rubric.mode).labelstudio_view(rubric))
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
    return review_form(rubric.mode).labelstudio_answer(review_id, _annotator(annotation),
                                                       results, rubric, where)


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
