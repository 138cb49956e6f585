"""Arrow schemas of the records rlaif-ray writes, and their Parquet I/O.

Every row carries run_id, iteration and policy_version (see docs/records.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_COMMON = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("iteration", pa.int64(), nullable=False),
    pa.field("policy_version", pa.int64(), nullable=False),
]

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


def to_table(rows: list[dict[str, Any]], schema: pa.Schema, **constants: Any) -> pa.Table:
    """Rows (dicts) to a table of `schema`; `constants` fill columns shared by every row.
    A missing or mistyped column raises, naming it."""
    columns = {}
    for field in schema:
        if field.name in constants:
            columns[field.name] = [constants[field.name]] * len(rows)
            continue
        try:
            columns[field.name] = [row[field.name] for row in rows]
        except KeyError:
            raise KeyError(f"record is missing column {field.name!r}") from None
    return pa.Table.from_pydict(columns, schema=schema)


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write `table` to `path` as Parquet atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path
