"""An iteration's dataset as Parquet parts: each judged batch is written at once as three
parts sharing one part id (`run.dir/data/{candidates,votes,verdicts}/iter=<k>/`, verdicts
last), so nothing judged is lost if the run stops; a part without its verdicts is an
unfinished one. `iteration_dataset` reads a table as a Ray Dataset."""

from __future__ import annotations

import ray

from rlaif_ray.data.records import (
    TABLES,
    Candidate,
    Verdict,
    Vote,
    part_files,
    table_dir,
    to_table,
    write_table,
)
from rlaif_ray.storage import Location, StoragePath


def write_parts(run_dir: Location, iteration: int, part: str,
                candidates: list[Candidate], votes: list[Vote],
                verdicts: list[Verdict]) -> None:
    """Persist one judged batch as Parquet parts with the id `part` (verdicts last: a part
    with verdicts is complete)."""
    run_id = StoragePath.of(run_dir).name
    for name, rows in (("candidates", candidates), ("votes", votes), ("verdicts", verdicts)):
        write_table(to_table(rows, TABLES[name], run_id=run_id),
                    table_dir(run_dir, name, iteration) / f"part-{part}.parquet")


def part_id(path: StoragePath) -> str:
    return path.stem.removeprefix("part-")


def complete_parts(run_dir: Location, iteration: int) -> set[str]:
    """Part ids whose verdicts were written; removes the leftovers of unfinished parts."""
    done = {part_id(p) for p in part_files(table_dir(run_dir, "verdicts", iteration))}
    for name in ("candidates", "votes"):
        for path in part_files(table_dir(run_dir, name, iteration)):
            if part_id(path) not in done:
                path.unlink()
    return done


def iteration_dataset(run_dir: Location, iteration: int,
                      table: str = "verdicts"):
    """The iteration's `table` (candidates | votes | verdicts) as a Ray Dataset."""
    path = table_dir(run_dir, table, iteration)
    if not part_files(path):
        raise FileNotFoundError(f"no {table} written under {path}")
    return ray.data.read_parquet(str(path), schema=TABLES[table])
