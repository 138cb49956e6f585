"""Human review: export the items whose verdict did not stand (dropped or abstained) as an
editable file, import people's verdicts back as highest-confidence records.

Human verdicts live in `run.dir/review/human/` and override the judges' verdict for the
same item wherever verdicts are read (`merged_verdicts`): training, exports, audits."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlaif_ray.data.records import (
    VERDICT_SCHEMA,
    read_parts,
    run_iterations,
    to_table,
    write_table,
)
from rlaif_ray.judge.ensemble import HUMAN, KEPT
from rlaif_ray.judge.rubric import SCORE_MAX, SCORE_MIN, WINNERS
from rlaif_ray.judge.verdicts import response_rows_from_pairs

QUEUE_STATUSES = ("dropped", "abstained")


class ReviewError(ValueError):
    """A review file that cannot be merged, naming the line."""


def human_verdicts(run_dir: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """(iteration, item_id) -> the latest human verdict row."""
    rows = read_parts(run_dir / "review" / "human")
    return {(r["iteration"], r["item_id"]): r for r in rows}


def merged_verdicts(run_dir: str | Path, iteration: int, mode: str,
                    pairwise_reward: str = "winrate") -> list[dict[str, Any]]:
    """The iteration's verdicts with human verdicts in place of the judges' for the same item
    (pairwise: the responses of a reviewed prompt get their rewards recomputed)."""
    run_dir = Path(run_dir)
    rows = read_parts(run_dir / "data" / f"iter={iteration}" / "verdicts")
    humans = {k[1]: v for k, v in human_verdicts(run_dir).items() if k[0] == iteration}
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


def review_queue(run_dir: str | Path, mode: str) -> list[dict[str, Any]]:
    """Items awaiting a person: judged items that did not stand and have no human verdict."""
    run_dir = Path(run_dir)
    judged_kind = "response" if mode == "pointwise" else "pair"
    humans = human_verdicts(run_dir)
    queue = []
    for iteration in run_iterations(run_dir):
        base = run_dir / "data" / f"iter={iteration}"
        pending = [v for v in read_parts(base / "verdicts")
                   if v["item_kind"] == judged_kind and v["status"] in QUEUE_STATUSES
                   and (iteration, v["item_id"]) not in humans]
        if not pending:
            continue
        texts = {c["response_id"]: c for c in read_parts(base / "candidates")}
        votes: dict[str, list[dict[str, Any]]] = {}
        for v in read_parts(base / "votes"):
            votes.setdefault(v["item_id"], []).append(
                {k: v[k] for k in ("judge", "order", "sample_index", "overall", "winner",
                                   "parse_status", "raw_text")})
        for v in pending:
            first = texts[v["response_id"]]
            entry = {"review_id": f"{iteration}:{v['item_id']}", "iteration": iteration,
                     "item_id": v["item_id"], "kind": mode, "status": v["status"],
                     "confidence": v["confidence"], "prompt": first["prompt"]}
            if mode == "pointwise":
                entry["response"] = first["response"]
            else:
                entry["response_a"] = first["response"]
                entry["response_b"] = texts[v["response_id_b"]]["response"]
            entry["votes"] = votes.get(v["item_id"], [])
            entry["verdict"] = None
            queue.append(entry)
    return queue


def queue_path(run_dir: str | Path) -> Path:
    """Where a run's review queue goes by default: `run.dir/review/queue.jsonl`."""
    return Path(run_dir) / "review" / "queue.jsonl"


def export_review(run_dir: str | Path, out: str | Path, mode: str) -> int:
    """Write the review queue to `out` (.jsonl, or .csv with votes as a JSON column)."""
    queue = review_queue(run_dir, mode)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        with out.open("w", newline="") as handle:
            columns = list(queue[0]) if queue else ["review_id", "verdict"]
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for entry in queue:
                writer.writerow({**entry, "votes": json.dumps(entry["votes"]),
                                 "verdict": ""})
    else:
        with out.open("w") as handle:
            for entry in queue:
                handle.write(json.dumps(entry) + "\n")
    return len(queue)


def _read_review_file(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise ReviewError(f"review file {path} does not exist")
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, row
        return
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
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


def import_review(run_dir: str | Path, path: str | Path, mode: str) -> int:
    """Merge people's verdicts from `path`. Every line is checked first; any unknown id or bad
    value rejects the whole file (nothing merged). Lines with an empty verdict are skipped.
    Returns the number of verdicts merged."""
    run_dir, path = Path(run_dir), Path(path)
    queue = {e["review_id"]: e for e in review_queue(run_dir, mode)}
    verdicts = {}
    for iteration in {e["iteration"] for e in queue.values()}:
        for v in read_parts(run_dir / "data" / f"iter={iteration}" / "verdicts"):
            verdicts[(iteration, v["item_id"])] = v
    rows, seen = [], set()
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
        judged = verdicts[(item["iteration"], item["item_id"])]
        row = {**judged, "status": HUMAN, "source": "human", "confidence": 1.0,
               "agreement": 1.0}
        if mode == "pointwise":
            score = (value - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
            row.update(score=score, reward=score)
        else:
            row.update(winner=value)
        rows.append(row)
    if rows:
        table = to_table(rows, VERDICT_SCHEMA)
        write_table(table, run_dir / "review" / "human" /
                    f"part-{time.strftime('%Y%m%d-%H%M%S')}-{len(rows)}.parquet")
    return len(rows)


def standing(row: dict[str, Any]) -> bool:
    """Whether a verdict row feeds training (judged and kept, or given by a person)."""
    return row["status"] in (KEPT, HUMAN)

