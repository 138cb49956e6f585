"""Arrow schemas of the records rlaif-ray writes, and their Parquet layout and I/O.

Every row carries run_id, iteration and policy_version (see docs/records.md). Each table
is its own hive-partitioned dataset, `run.dir/data/<table>/iter=<k>/part-<id>.parquet`, so
`pandas.read_parquet("run/data/verdicts")`, `ray.data.read_parquet(...)` or DuckDB read one
table at a time. Paths are `StoragePath`s: local or on an object store alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from rlaif_ray.storage import Location, StoragePath


class Status(StrEnum):
    """A verdict row's status (its `status` column): `kept` (the judges stood and agreed
    with enough confidence), `dropped` (they did not), `abstained` (no valid vote), or
    `human` (a person's verdict, which replaces the judges')."""

    KEPT = "kept"
    DROPPED = "dropped"
    ABSTAINED = "abstained"
    HUMAN = "human"


STANDING = frozenset({Status.KEPT, Status.HUMAN})


class ItemKind(StrEnum):
    """What a verdict row judges (its `item_kind` column): one `response` (pointwise, and
    each response's reward derived from its pairs), or a `pair` of responses (pairwise)."""

    RESPONSE = "response"
    PAIR = "pair"


_COMMON = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("iteration", pa.int64(), nullable=False),
    pa.field("policy_version", pa.int64(), nullable=False),
]



def named(value_type: pa.DataType) -> pa.DataType:
    """The Arrow type of a {name: value} column (scores per rubric dimension): a list of
    {name, value} structs. Hugging Face `datasets` has no map type (it rejects
    map<string, double>); this type it loads as-is, as do pandas, DuckDB and pyarrow.
    `to_table` takes the column as a dict and `read_parts` gives a dict back."""
    return pa.list_(pa.struct([pa.field("name", pa.string(), nullable=False),
                               pa.field("value", value_type)]))


NAMED_SCORES = named(pa.float64())
NAMED_LABELS = named(pa.string())


def _is_named(field: pa.Field) -> bool:
    return field.type in (NAMED_SCORES, NAMED_LABELS)


def as_named(value: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """A {name: value} dict as a named column's value (None stays None)."""
    return None if value is None else [{"name": k, "value": v} for k, v in value.items()]


def from_named(value: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """A named column's value read back as a {name: value} dict (None stays None)."""
    return None if value is None else {e["name"]: e["value"] for e in value}


CANDIDATE_SCHEMA = pa.schema(_COMMON + [
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("prompt_token_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("response_id", pa.string(), nullable=False),
    pa.field("response", pa.string(), nullable=False),
    pa.field("response_token_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("logprobs", pa.list_(pa.float32()), nullable=False),
    pa.field("finish_reason", pa.string(), nullable=False),
    pa.field("generator_replica", pa.string(), nullable=False),
    pa.field("generation_s", pa.float64(), nullable=False),
])


class _Record:
    """A table's row as a dataclass (its table's columns less run_id)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """A row read back (`read_parts`) as a record: its other columns are dropped."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Candidate(_Record):
    """One sampled answer, as a generator returns it: a `candidates` row less its run_id."""

    prompt_id: str
    prompt: str
    prompt_token_ids: list[int]
    response_id: str  # `<prompt_id>/i<iteration>/s<sample>`
    response: str
    response_token_ids: list[int]
    logprobs: list[float]  # the sampled tokens' log-probs under the generating policy
    finish_reason: str
    generator_replica: str
    generation_s: float  # the seconds of the generate call that sampled it
    policy_version: int
    iteration: int


@dataclass(frozen=True)
class Vote(_Record):
    """One vote of one judge on one item, as judging makes it: a `votes` row less its run_id.
    Pairwise winners are un-swapped (`A` is always the item's response_a)."""

    item_id: str
    prompt_id: str
    judge: str
    judge_kind: str  # llm | http | rule
    replica: str
    kind: str  # the rubric mode: pointwise | pairwise
    order: str  # AB | BA | "" (pointwise)
    sample_index: int
    raw_text: str
    policy_version: int  # of the judged answers
    iteration: int
    parse_status: str = "ok"  # ok | abstain
    error: str | None = None
    scores: dict[str, float] | None = None  # pointwise, 1-10 per dimension
    overall: float | None = None  # pointwise, weighted and normalised to [0, 1]
    winner: str | None = None  # pairwise: A | B | tie
    dimension_winners: dict[str, str] | None = None  # pairwise, per dimension
    first_slot: bool | None = None  # pairwise: the vote chose the answer shown first
    judge_s: float = 0.0  # the request's seconds per vote (rule votes: unmetered)
    prompt_tokens: int = 0  # what the judge read for this vote (llm: on a request's
    completion_tokens: int = 0  # first vote only) and wrote

    @property
    def valid(self) -> bool:
        """Whether the reply parsed (else the vote is an abstention)."""
        return self.parse_status == "ok"


@dataclass(frozen=True)
class Verdict(_Record):
    """The verdict on one item (a response, or a pair: `response_id_b` set), as judging or
    a person makes it: a `verdicts` row less its run_id, with the texts judged."""

    item_id: str
    item_kind: str  # response | pair
    prompt_id: str
    response_id: str  # the response, or a pair's A
    response_id_b: str | None  # a pair's B
    policy_version: int
    iteration: int
    prompt: str
    response: str  # the response, or a pair's A
    response_b: str | None  # a pair's B
    status: str = Status.DROPPED  # kept | dropped | abstained | human
    source: str = "judge"  # judge | human
    dimension_scores: dict[str, float] | None = None  # mean 1-10 per dimension
    score: float | None = None  # pointwise ensemble score in [0, 1]
    winner: str | None = None  # pair: A | B | tie
    reward: float | None = None  # response verdicts that stand: the PPO reward
    agreement: float = 0.0
    confidence: float = 0.0
    votes_kept: int = 0
    votes_dropped: int = 0
    judges_standing: int = 0
    reviewer: str | None = None  # human verdicts: who gave it
    reviewed_at: float | None = None  # human verdicts: when (Unix seconds)

    @property
    def stands(self) -> bool:
        """Whether it feeds training (judged and kept, or given by a person)."""
        return self.status in STANDING


def _column(row: Any, name: str) -> Any:
    """Column `name` of a row: a dict's key or a record's attribute."""
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def to_table(rows: Sequence[Any], schema: pa.Schema, **constants: Any) -> pa.Table:
    """Rows (dicts or records such as `Candidate`) to a table of `schema`; `constants`
    fill columns shared by every row. A missing or mistyped column raises, naming it."""
    columns = {}
    for field in schema:
        if field.name in constants:
            columns[field.name] = [constants[field.name]] * len(rows)
            continue
        try:
            columns[field.name] = [_column(row, field.name) for row in rows]
        except (KeyError, AttributeError):
            raise KeyError(f"record is missing column {field.name!r}") from None
        if _is_named(field):
            columns[field.name] = [as_named(v) for v in columns[field.name]]
    return pa.Table.from_pydict(columns, schema=schema)


def write_table(table: pa.Table, path: Location) -> StoragePath:
    """Write `table` to `path` as one Parquet file, whole or not at all."""
    path = StoragePath.of(path)
    with path.open_output() as handle:
        pq.write_table(table, handle)
    return path

VOTE_SCHEMA = pa.schema(_COMMON + [
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("judge", pa.string(), nullable=False),
    pa.field("judge_kind", pa.string(), nullable=False),  # llm | http | rule
    pa.field("replica", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # pointwise | pairwise
    pa.field("order", pa.string(), nullable=False),  # AB | BA | "" (pointwise)
    pa.field("sample_index", pa.int32(), nullable=False),
    pa.field("raw_text", pa.string(), nullable=False),
    pa.field("scores", NAMED_SCORES),  # pointwise, 1-10 per dimension
    pa.field("overall", pa.float64()),  # pointwise, weighted and normalised to [0, 1]
    pa.field("winner", pa.string()),  # pairwise, un-swapped: A | B | tie
    pa.field("dimension_winners", NAMED_LABELS),  # pairwise, A | B | tie per dimension
    pa.field("first_slot", pa.bool_()),  # pairwise: the vote chose the answer shown first
    pa.field("parse_status", pa.string(), nullable=False),  # ok | abstain
    pa.field("error", pa.string()),
    pa.field("judge_s", pa.float64(), nullable=False),
    pa.field("prompt_tokens", pa.int64()),  # what the judge read for this vote (llm: the
    pa.field("completion_tokens", pa.int64()),  # prompt on a request's first vote only)
])

VERDICT_SCHEMA = pa.schema(_COMMON + [
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("item_kind", pa.string(), nullable=False),  # response | pair
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("response_id", pa.string(), nullable=False),  # the response, or a pair's A
    pa.field("response_id_b", pa.string()),  # a pair's B
    pa.field("dimension_scores", NAMED_SCORES),  # mean 1-10 per dimension
    pa.field("score", pa.float64()),  # pointwise ensemble score in [0, 1]
    pa.field("winner", pa.string()),  # pair: A | B | tie
    pa.field("reward", pa.float64()),  # response rows that stand: the PPO reward
    pa.field("agreement", pa.float64(), nullable=False),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("votes_kept", pa.int32(), nullable=False),
    pa.field("votes_dropped", pa.int32(), nullable=False),
    pa.field("judges_standing", pa.int32(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # kept | dropped | abstained | human
    pa.field("source", pa.string(), nullable=False),  # judge | human
    pa.field("prompt", pa.string()),  # the texts judged, so the table reads on its own
    pa.field("response", pa.string()),  # the response, or a pair's A
    pa.field("response_b", pa.string()),  # a pair's B
    pa.field("reviewer", pa.string()),  # human rows: who gave the verdict
    pa.field("reviewed_at", pa.float64()),  # human rows: when (Unix seconds)
])

TABLES = {"candidates": CANDIDATE_SCHEMA, "votes": VOTE_SCHEMA, "verdicts": VERDICT_SCHEMA}


def table_dir(run_dir: Location, table: str, iteration: int) -> StoragePath:
    """Where iteration `iteration`'s parts of `table` go: `data/<table>/iter=<k>/`."""
    return StoragePath.of(run_dir) / "data" / table / f"iter={iteration}"


def run_iterations(run_dir: Location) -> list[int]:
    """The iterations with data of any table in a run directory, in order."""
    data = StoragePath.of(run_dir) / "data"
    return sorted({int(p.name.removeprefix("iter=")) for p in data.glob("*/iter=*")})


def delete_iteration(run_dir: Location, iteration: int) -> None:
    """Remove every table's data of `iteration` (it runs again)."""
    for table in TABLES:
        table_dir(run_dir, table, iteration).rmtree()


def part_files(directory: StoragePath) -> list[StoragePath]:
    """The `part-*.parquet` files in `directory`, in name order."""
    return directory.glob("part-*.parquet")


def read_parts(directory: Location,
               columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of every `part-*.parquet` in `directory` (none: no rows), in part order."""
    directory = StoragePath.of(directory)
    files = part_files(directory)
    if not files:
        return []
    table = pq.read_table([f.path for f in files], columns=columns, filesystem=directory.fs)
    rows = table.to_pylist()
    for field in table.schema:
        if _is_named(field):
            for row in rows:
                row[field.name] = from_named(row[field.name])
    return rows


def read_candidates(run_dir: Location, iteration: int) -> list[Candidate]:
    """A run directory's candidates of `iteration`, as records."""
    return [Candidate.from_row(row)
            for row in read_parts(table_dir(run_dir, "candidates", iteration))]
