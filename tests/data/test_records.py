"""The typed candidate record: written as a `candidates` part and read back unchanged, and a
missing column named. Pure logic with real Parquet, no Ray."""

import pytest
from records import candidate

from rlaif_ray.data.parts import write_parts
from rlaif_ray.data.records import (
    CANDIDATE_SCHEMA,
    read_candidates,
    read_parts,
    table_dir,
    to_table,
)


def test_candidates_written_as_a_part_read_back_as_the_same_records(tmp_path):
    written = [candidate("p/i2/s0", tokens=2, iteration=2, policy_version=2),
               candidate("p/i2/s1", response="é ünïcode", tokens=4, iteration=2,
                         policy_version=2)]
    write_parts(tmp_path / "run", 2, "00001", written, [], [])
    assert read_candidates(tmp_path / "run", 2) == written
    rows = read_parts(table_dir(tmp_path / "run", "candidates", 2))
    assert {r["run_id"] for r in rows} == {"run"}  # the column a record leaves to the writer


def test_a_record_without_a_column_of_the_schema_is_named():
    with pytest.raises(KeyError, match="missing column 'run_id'"):
        to_table([candidate()], CANDIDATE_SCHEMA)
