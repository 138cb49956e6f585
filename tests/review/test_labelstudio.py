"""The queue as Label Studio tasks and Label Studio's export back: a round trip in the
tool's own JSON formats."""

import json
import xml.etree.ElementTree as ET

import pytest

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.review.labelstudio import (
    config_path,
    export_tasks,
    import_annotations,
    is_labelstudio_export,
)
from rlaif_ray.review.queue import ReviewError, merged_verdicts, review_queue


def annotate(task, results, cancelled=False, who=7):
    """What Label Studio's JSON export holds for a task with one annotation."""
    return {**task, "id": 1, "annotations": [{"id": 3, "completed_by": who,
                                              "was_cancelled": cancelled,
                                              "result": results}]}


def rating(dimension, value):
    return {"from_name": dimension, "to_name": "response", "type": "rating",
            "value": {"rating": value}}


def test_pointwise_round_trip(pointwise_run, tmp_path):
    run_dir, rubric = pointwise_run
    out = tmp_path / "tasks.json"
    assert export_tasks(run_dir, out, rubric) == 3
    tasks = json.loads(out.read_text())
    assert tasks[1]["data"] == {"review_id": "0:a", "prompt": "Prompt of a",
                                "response": "Answer a"}
    config = ET.fromstring(config_path(out).read_text())
    ratings = [r.get("name") for r in config.iter("Rating")]
    assert ratings == list(DEFAULT_DIMENSIONS)
    assert {t.get("value") for t in config.iter("Text")} == {"$prompt", "$response"}

    done = [annotate(tasks[1], [rating(d, 9) for d in DEFAULT_DIMENSIONS]),
            annotate(tasks[2], [rating(d, 1) for d in DEFAULT_DIMENSIONS], cancelled=True),
            tasks[0]]  # not annotated yet
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(done))
    assert is_labelstudio_export(exported)
    assert import_annotations(run_dir, exported, rubric) == 1
    row = next(v for v in merged_verdicts(run_dir, 0, "pointwise") if v.item_id == "a")
    assert row.reviewer == "labelstudio:7" and row.status == "human"
    assert [e["review_id"] for e in review_queue(run_dir, "pointwise")] == ["1:d", "0:b"]


def test_pairwise_round_trip_and_bad_tasks(pairwise_run, tmp_path):
    run_dir, rubric = pairwise_run
    out = tmp_path / "tasks.json"
    assert export_tasks(run_dir, out, rubric) == 1
    task = json.loads(out.read_text())[0]
    config = ET.fromstring(config_path(out).read_text())
    assert [c.get("value") for c in config.iter("Choice")] == ["A", "B", "tie"]
    choice = {"from_name": "winner", "to_name": "prompt", "type": "choices",
              "value": {"choices": ["tie"]}}
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps([annotate(task, [{**choice, "value": {"choices": []}}])]))
    with pytest.raises(ReviewError, match="task 0: winner must be one choice"):
        import_annotations(run_dir, exported, rubric)
    exported.write_text(json.dumps([{"data": {"prompt": "x"}}]))
    with pytest.raises(ReviewError, match="task 0: data.review_id is missing"):
        import_annotations(run_dir, exported, rubric)
    exported.write_text(json.dumps([annotate(task, [choice], who={"email": "x@y.z"})]))
    assert import_annotations(run_dir, exported, rubric) == 1
    pair = next(v for v in merged_verdicts(run_dir, 0, "pairwise") if v.item_id == "x")
    assert pair.winner == "tie" and pair.reviewer == "labelstudio:x@y.z"
