"""Human review: export the items whose verdict did not stand (dropped or abstained) as an
editable file, import people's verdicts back as highest-confidence records.

An imported verdict is a row of the verdict table itself (`source=human`, in a
`part-human-*.parquet` of its iteration), next to the judges' row it replaces: the judges'
verdict stays for audit, and every reader of verdicts (`merged_verdicts`: training, pairs,
the review queue) takes the newest human row of an item in its place."""

from __future__ import annotations

import csv
import io
import json
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
from rlaif_ray.judge.rubric import SCORE_MAX, SCORE_MIN, WINNERS
from rlaif_ray.judge.verdicts import response_rows_from_pairs
from rlaif_ray.storage import Location, StoragePath

HUMAN_SOURCE = "human"

QUEUE_STATUSES = (Status.DROPPED, Status.ABSTAINED)


class ReviewError(ValueError):
    """A review file that cannot be merged, naming the line."""


def split_sources(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                      dict[str, dict[str, Any]]]:
    """An iteration's verdict rows as (the judges' rows, item_id -> newest human row)."""
    judged = [r for r in rows if r["source"] != HUMAN_SOURCE]
    return judged, {r["item_id"]: r for r in rows if r["source"] == HUMAN_SOURCE}


def merged_verdicts(run_dir: Location, iteration: int, mode: str,
                    pairwise_reward: str = "winrate") -> list[dict[str, Any]]:
    """The iteration's verdicts with human verdicts in place of the judges' for the same item
    (pairwise: the responses of a reviewed prompt get their rewards recomputed)."""
    run_dir = StoragePath.of(run_dir)
    rows, humans = split_sources(read_parts(table_dir(run_dir, "verdicts", iteration)))
    if not humans:
        return rows
    judged_kind = "response" if mode == "pointwise" else "pair"
    items = [humans.get(r["item_id"], r) if r["item_kind"] == judged_kind else r for r in rows]
    if mode == "pointwise":
        return items
    touched = {h["prompt_id"] for h in humans.values()}
    pairs = [r for r in items if r["item_kind"] == "pair"]
    redone = response_rows_from_pairs([p for p in pairs if p["prompt_id"] in touched],
                                      pairwise_reward)
    for row in redone:
        row.update(run_id=run_dir.name, iteration=iteration,
                   policy_version=next(p["policy_version"] for p in pairs
                                       if p["prompt_id"] == row["prompt_id"]))
    keep = [r for r in items if r["item_kind"] == "pair" or r["prompt_id"] not in touched]
    return keep + redone


def review_queue(run_dir: Location, mode: str) -> list[dict[str, Any]]:
    """Items awaiting a person: judged items that did not stand and have no human verdict."""
    run_dir = StoragePath.of(run_dir)
    judged_kind = "response" if mode == "pointwise" else "pair"
    queue = []
    for iteration in run_iterations(run_dir):
        judged, humans = split_sources(read_parts(table_dir(run_dir, "verdicts", iteration)))
        pending = [v for v in judged
                   if v["item_kind"] == judged_kind and v["status"] in QUEUE_STATUSES
                   and v["item_id"] not in humans]
        if not pending:
            continue
        votes: dict[str, list[dict[str, Any]]] = {}
        for v in read_parts(table_dir(run_dir, "votes", iteration)):
            votes.setdefault(v["item_id"], []).append(
                {k: v[k] for k in ("judge", "order", "sample_index", "overall", "winner",
                                   "parse_status", "raw_text")})
        for v in pending:
            entry = {"review_id": f"{iteration}:{v['item_id']}", "iteration": iteration,
                     "item_id": v["item_id"], "kind": mode, "status": v["status"],
                     "confidence": v["confidence"], "prompt": v["prompt"]}
            if mode == "pointwise":
                entry["response"] = v["response"]
            else:
                entry["response_a"] = v["response"]
                entry["response_b"] = v["response_b"]
            entry["votes"] = votes.get(v["item_id"], [])
            entry["verdict"] = None
            queue.append(entry)
    return queue


def queue_path(run_dir: Location) -> StoragePath:
    """Where a run's review queue goes by default: `run.dir/review/queue.jsonl`."""
    return StoragePath.of(run_dir) / "review" / "queue.jsonl"


def export_review(run_dir: Location, out: Location,
                  mode: str) -> int:
    """Write the review queue to `out` (.jsonl, or .csv with votes as a JSON column)."""
    queue = review_queue(run_dir, mode)
    text = io.StringIO(newline="")
    if str(out).endswith(".csv"):
        columns = list(queue[0]) if queue else ["review_id", "verdict"]
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for entry in queue:
            writer.writerow({**entry, "votes": json.dumps(entry["votes"]), "verdict": ""})
    else:
        text.writelines(json.dumps(entry) + "\n" for entry in queue)
    StoragePath.of(out).write_text(text.getvalue())
    return len(queue)


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


def _parse_verdict(value: Any, mode: str, where: str) -> Any:
    if mode == "pairwise":
        if value not in WINNERS:
            raise ReviewError(f"{where}: verdict must be one of {list(WINNERS)}, got {value!r}")
        return value
    try:
        score = int(value)
    except (TypeError, ValueError):
        score = None
    if score is None or str(value).strip() not in (str(score), f"{score}.0") or \
            not SCORE_MIN <= score <= SCORE_MAX:
        raise ReviewError(f"{where}: verdict must be an integer score {SCORE_MIN}-{SCORE_MAX}, "
                          f"got {value!r}")
    return score


def import_review(run_dir: Location, path: Location,
                  mode: str) -> int:
    """Merge people's verdicts from `path` as `source=human` verdict rows. Every line is
    checked first; any unknown id or bad value rejects the whole file (nothing merged).
    Lines with an empty verdict are skipped. Returns the number of verdicts merged."""
    run_dir, path = StoragePath.of(run_dir), StoragePath.of(path)
    queue = {e["review_id"]: e for e in review_queue(run_dir, mode)}
    verdicts: dict[tuple[int, str], dict[str, Any]] = {}
    for iteration in {e["iteration"] for e in queue.values()}:
        judged, _ = split_sources(read_parts(table_dir(run_dir, "verdicts", iteration)))
        for v in judged:
            verdicts[(iteration, v["item_id"])] = v
    rows: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for number, entry in _read_review_file(path):
        where = f"{path}:{number}"
        review_id = entry.get("review_id")
        if review_id not in queue:
            raise ReviewError(f"{where}: unknown review_id {review_id!r} (not in the review "
                              f"queue of {run_dir})")
        if review_id in seen:
            raise ReviewError(f"{where}: review_id {review_id!r} appears twice")
        seen.add(review_id)
        if entry.get("verdict") in (None, ""):
            continue
        value = _parse_verdict(entry["verdict"], mode, where)
        item = queue[review_id]
        row = {**verdicts[(item["iteration"], item["item_id"])], "status": Status.HUMAN,
               "source": HUMAN_SOURCE, "confidence": 1.0, "agreement": 1.0}
        if mode == "pointwise":
            score = (value - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
            row.update(score=score, reward=score)
        else:
            row.update(winner=value)
        rows.append(row)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for iteration in sorted({r["iteration"] for r in rows}):
        mine = [r for r in rows if r["iteration"] == iteration]
        write_table(to_table(mine, VERDICT_SCHEMA), table_dir(run_dir, "verdicts", iteration)
                    / f"part-human-{stamp}-{len(mine)}.parquet")
    return len(rows)
