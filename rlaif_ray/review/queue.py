"""The review queue: judged items whose verdict did not stand (dropped or abstained) and no
person has judged yet, lowest confidence first, with every judge's votes; and the verdict
table as every reader sees it, people's verdicts in place of the judges'.

A person's verdict is a row of the verdict table itself (`source=human`, in a
`part-human-*.parquet` of its iteration, `rlaif_ray.review.human`), next to the judges' row
it replaces: the judges' verdict stays for audit, and every reader of verdicts
(`merged_verdicts`: training, pairs, the queue) takes the newest human row of an item."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from rlaif_ray.data.records import (
    ItemKind,
    Status,
    Verdict,
    read_parts,
    run_iterations,
    table_dir,
)
from rlaif_ray.judge.modes import rubric_mode
from rlaif_ray.judge.verdicts import response_verdicts
from rlaif_ray.storage import Location, StoragePath

HUMAN_SOURCE = "human"

QUEUE_STATUSES = (Status.DROPPED, Status.ABSTAINED)

# What a queue entry keeps of each vote: enough to see why the judges did not stand.
VOTE_FIELDS = ("judge", "order", "sample_index", "overall", "scores", "winner",
               "dimension_winners", "parse_status", "raw_text")


class ReviewError(ValueError):
    """A review answer or file that cannot be merged, naming the line or field."""


def judged_kind(mode: str) -> str:
    """The verdict rows a person reviews in rubric `mode`: responses, or pairs."""
    return rubric_mode(mode).item_kind


def held_for_review(row: dict[str, Any], kind: str) -> bool:
    """Whether a judges' verdict row is one the queue holds: a judged item of `kind`
    (`judged_kind`) whose verdict did not stand."""
    return row["item_kind"] == kind and row["status"] in QUEUE_STATUSES


def split_sources(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                      dict[str, dict[str, Any]]]:
    """An iteration's verdict rows as (the judges' rows, item_id -> newest human row)."""
    judged = [r for r in rows if r["source"] != HUMAN_SOURCE]
    humans: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["source"] == HUMAN_SOURCE and (
                row["item_id"] not in humans
                or (row.get("reviewed_at") or 0.0) >= (humans[row["item_id"]].get(
                    "reviewed_at") or 0.0)):
            humans[row["item_id"]] = row
    return judged, humans


def merged_verdicts(run_dir: Location, iteration: int, mode: str,
                    pairwise_reward: str = "winrate") -> list[Verdict]:
    """The iteration's verdicts with human verdicts in place of the judges' for the same item
    (pairwise: the responses of a reviewed prompt get their rewards recomputed)."""
    rows, humans = split_sources(read_parts(table_dir(run_dir, "verdicts", iteration)))
    kind = judged_kind(mode)
    verdicts = [Verdict.from_row(humans.get(r["item_id"], r) if r["item_kind"] == kind else r)
                for r in rows]
    if not humans or not rubric_mode(mode).relative_rewards:
        return verdicts
    touched = {h["prompt_id"] for h in humans.values()}
    redone = response_verdicts([v for v in verdicts if v.item_kind == ItemKind.PAIR
                                       and v.prompt_id in touched], pairwise_reward)
    kept = [v for v in verdicts if v.item_kind == ItemKind.PAIR or v.prompt_id not in touched]
    return kept + redone


def _entry(verdict: dict[str, Any], iteration: int, mode: str,
           votes: list[dict[str, Any]]) -> dict[str, Any]:
    entry = {"review_id": f"{iteration}:{verdict['item_id']}", "iteration": iteration,
             "item_id": verdict["item_id"], "kind": mode, "status": verdict["status"],
             "confidence": verdict["confidence"], "prompt": verdict["prompt"]}
    fields = rubric_mode(mode).answer_fields  # the response, or a pair's A and B
    texts = (verdict["response"], verdict.get("response_b"))[:len(fields)]
    entry.update(zip(fields, texts, strict=True))
    entry["votes"] = votes
    entry["verdict"] = None
    return entry


def review_queue(run_dir: Location, mode: str) -> list[dict[str, Any]]:
    """Items awaiting a person, lowest confidence first (then by iteration and id): judged
    items that did not stand and have no human verdict, each with its judges' votes."""
    run_dir = StoragePath.of(run_dir)
    kind = judged_kind(mode)
    queue = []
    for iteration in run_iterations(run_dir):
        judged, humans = split_sources(read_parts(table_dir(run_dir, "verdicts", iteration)))
        pending = [v for v in judged
                   if held_for_review(v, kind) and v["item_id"] not in humans]
        if not pending:
            continue
        votes: dict[str, list[dict[str, Any]]] = {}
        for v in read_parts(table_dir(run_dir, "votes", iteration)):
            votes.setdefault(v["item_id"], []).append({k: v[k] for k in VOTE_FIELDS})
        queue += [_entry(v, iteration, mode, votes.get(v["item_id"], [])) for v in pending]
    queue.sort(key=lambda e: (e["confidence"], e["iteration"], e["item_id"]))
    return queue


@dataclass(frozen=True)
class QueueFilter:
    """Which queue entries a reviewer wants: of one iteration, voted on by one judge, or
    whose votes disagree on one rubric dimension (None: any)."""

    iteration: int | None = None
    judge: str | None = None
    dimension: str | None = None

    def keeps(self, entry: dict[str, Any]) -> bool:
        """Whether `entry` passes every condition set."""
        votes = entry["votes"]
        if self.iteration is not None and entry["iteration"] != self.iteration:
            return False
        if self.judge is not None and all(v["judge"] != self.judge for v in votes):
            return False
        return self.dimension is None or disagrees_on(votes, self.dimension)


def disagrees_on(votes: list[dict[str, Any]], dimension: str) -> bool:
    """Whether the valid votes give `dimension` more than one value (scores or winners)."""
    values = set()
    for vote in votes:
        by_dimension = vote.get("scores") or vote.get("dimension_winners") or {}
        if vote["parse_status"] == "ok" and dimension in by_dimension:
            values.add(by_dimension[dimension])
    return len(values) > 1


def queue_path(run_dir: Location) -> StoragePath:
    """Where a run's review queue goes by default: `run.dir/review/queue.jsonl`."""
    return StoragePath.of(run_dir) / "review" / "queue.jsonl"


def export_review(run_dir: Location, out: Location, mode: str) -> int:
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
