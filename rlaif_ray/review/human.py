"""People's verdicts: an answer checked against the rubric, turned into a `source=human`
row of the verdict table, and written append-only (a new `part-human-*.parquet` per
write, never rewriting a judge's row), idempotent when the same answer comes twice."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from rlaif_ray.data.records import (
    VERDICT_SCHEMA,
    Status,
    read_parts,
    run_iterations,
    table_dir,
    to_table,
    write_table,
)
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.review.forms import Answer, review_form
from rlaif_ray.review.queue import (
    HUMAN_SOURCE,
    ReviewError,
    held_for_review,
    judged_kind,
    split_sources,
)
from rlaif_ray.storage import Location, StoragePath


def parse_answer(raw: dict[str, Any], rubric: Rubric, where: str,
                 reviewer: str = "") -> Answer | None:
    """An answer from its JSON form (`review_id`, `reviewer`, and `scores` per dimension or
    `verdict`: a score, or A/B/tie); None when it gives no verdict (a skip). A bad field
    raises `ReviewError` naming `where` and the field."""
    review_id = raw.get("review_id")
    if not isinstance(review_id, str) or not review_id:
        raise ReviewError(f"{where}: review_id is missing")
    who = str(raw.get("reviewer") or reviewer).strip()
    scores, verdict = raw.get("scores"), raw.get("verdict")
    if scores in (None, "", {}) and verdict in (None, ""):
        return None
    if not who:
        raise ReviewError(f"{where}: reviewer is missing (who gave this verdict?)")
    return review_form(rubric.mode).answer(review_id, who, scores, verdict, rubric, where)


def human_row(judged: dict[str, Any], answer: Answer, rubric: Rubric,
              at: float) -> dict[str, Any]:
    """The verdict row of `answer` on the judges' row `judged`: full confidence, the
    person's score or winner, the judges' texts and ids kept."""
    row = {**judged, "status": Status.HUMAN, "source": HUMAN_SOURCE, "confidence": 1.0,
           "agreement": 1.0, "reviewer": answer.reviewer, "reviewed_at": at}
    return {**row, **review_form(rubric.mode).verdict(answer, rubric)}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two human rows give the same verdict, by the same person."""
    def key(row: dict[str, Any]) -> tuple:
        dims = row["dimension_scores"]
        return row["reviewer"], row["winner"], row["score"], sorted(dims.items()) if dims else None
    return key(a) == key(b)


class HumanVerdicts:
    """Writes people's verdicts into a run's verdict table. Every answer of a call is
    checked before anything is written (one bad answer: nothing written); an answer that
    repeats the item's newest human verdict is not written again."""

    def __init__(self, run_dir: Location, rubric: Rubric) -> None:
        self.run_dir = StoragePath.of(run_dir)
        self.rubric = rubric
        self._lock = threading.Lock()

    def _scan(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """review_id -> the judges' verdict row, for every item the queue has held (a
        reviewed item too: a person may change their verdict); and review_id -> that
        item's newest human row. One read of each iteration's verdicts."""
        kind = judged_kind(self.rubric.mode)
        items, newest = {}, {}
        for iteration in run_iterations(self.run_dir):
            judged, humans = split_sources(read_parts(table_dir(self.run_dir, "verdicts",
                                                                iteration)))
            items.update({f"{iteration}:{v['item_id']}": v for v in judged
                          if held_for_review(v, kind)})
            newest.update({f"{iteration}:{item}": row for item, row in humans.items()})
        return items, newest

    def reviewable(self) -> dict[str, dict[str, Any]]:
        """review_id -> the judges' verdict row of every item the queue has held."""
        return self._scan()[0]

    def record(self, answers: list[tuple[str, Answer]]) -> int:
        """Write `(where, answer)` pairs; returns how many verdicts were new."""
        with self._lock:
            items, newest = self._scan()
            rows, seen = [], set()
            now = time.time()
            for where, answer in answers:
                if answer.review_id not in items:
                    raise ReviewError(f"{where}: unknown review_id {answer.review_id!r} "
                                      f"(not an item of the review queue of {self.run_dir})")
                if answer.review_id in seen:
                    raise ReviewError(f"{where}: review_id {answer.review_id!r} appears "
                                      "twice")
                seen.add(answer.review_id)
                row = human_row(items[answer.review_id], answer, self.rubric, now)
                previous = newest.get(answer.review_id)
                if previous is None or not _same(previous, row):
                    rows.append(row)
            self._write(rows)
            return len(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        stamp = time.time_ns()
        for iteration in sorted({r["iteration"] for r in rows}):
            mine = [r for r in rows if r["iteration"] == iteration]
            write_table(to_table(mine, VERDICT_SCHEMA),
                        table_dir(self.run_dir, "verdicts", iteration)
                        / f"part-human-{stamp}-{len(mine)}.parquet")


def _read_review_file(path: StoragePath) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise ReviewError(f"review file {path} does not exist")
    if path.name.endswith(".csv"):
        rows = csv.DictReader(io.StringIO(path.read_text(), newline=""))
        for number, row in enumerate(rows, start=2):
            yield number, row
        return
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ReviewError(f"{path}:{number}: malformed JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise ReviewError(f"{path}:{number}: expected a JSON object")
        yield number, row


def import_review(run_dir: Location, path: Location, rubric: Rubric,
                  reviewer: str = "file") -> int:
    """Merge people's verdicts from `path` (the queue's JSONL or CSV, `verdict` or `scores`
    filled in) as `source=human` verdict rows. Every line is checked first; any unknown id
    or bad value rejects the whole file (nothing merged). Lines with no verdict are
    skipped. Returns the number of verdicts merged."""
    path = StoragePath.of(path)
    verdicts = HumanVerdicts(run_dir, rubric)
    known = verdicts.reviewable()
    answers, seen = [], set()
    for number, raw in _read_review_file(path):
        where = f"{path}:{number}"
        review_id = raw.get("review_id")
        if review_id not in known:
            raise ReviewError(f"{where}: unknown review_id {review_id!r} (not an item of "
                              f"the review queue of {verdicts.run_dir})")
        if review_id in seen:
            raise ReviewError(f"{where}: review_id {review_id!r} appears twice")
        seen.add(review_id)
        answer = parse_answer(raw, rubric, where, reviewer)
        if answer is not None:
            answers.append((where, answer))
    return verdicts.record(answers)
