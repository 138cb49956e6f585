"""StoragePath on local disk and on a real S3-compatible server (moto): the same calls, the
same results, and whole-file writes."""

import json

import pyarrow as pa
import pytest

from rlaif_ray.data.records import read_parts, run_iterations, table_dir, write_table
from rlaif_ray.storage import StoragePath, join, scheme_problem


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> StoragePath:
    if request.param == "local":
        return StoragePath.of(tmp_path / "run")
    request.getfixturevalue("s3_env")
    return StoragePath.of(f"s3://rlaif/{request.node.name.replace('[', '-').rstrip(']')}")


def test_files_round_trip_and_list(root):
    (root / "metrics.jsonl").append_text('{"iteration": 0}\n')
    (root / "metrics.jsonl").append_text('{"iteration": 1}\n')
    assert [json.loads(x)["iteration"] for x in
            (root / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    (root / "ck" / "a" / "state.json").write_text("{}")
    (root / "ck" / "b" / "state.json").write_bytes(b"12345")
    (root / "ck" / "b" / "other").write_text("x")
    assert [p.parent.name for p in root.glob("ck/*/state.json")] == ["a", "b"]
    assert (root / "ck" / "b" / "state.json").size() == 5
    assert (root / "ck" / "nope").size() is None and not (root / "ck" / "nope").exists()
    assert root.glob("missing/*") == []
    with (root / "ck").local_copy() as local:
        assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*")
                      if p.is_file()) == ["a/state.json", "b/other", "b/state.json"]
    (root / "ck" / "a").rmtree()
    assert [p.name for p in (root / "ck").iterdir()] == ["b"]


def test_a_failed_write_leaves_no_file(root):
    target = root / "data" / "part-0.parquet"
    with pytest.raises(RuntimeError), target.open_output() as handle:
        handle.write(b"half")
        raise RuntimeError("crash mid-write")
    assert not target.exists() and list((root / "data").iterdir()) == []


def test_tables_write_and_read_by_iteration(root):
    schema = pa.schema([pa.field("x", pa.int64())])
    for k in (0, 2):
        write_table(pa.table({"x": [k, k + 10]}, schema=schema),
                    table_dir(root, "votes", k) / "part-a.parquet")
    assert run_iterations(root) == [0, 2]
    assert [r["x"] for r in read_parts(table_dir(root, "votes", 2))] == [2, 12]
    assert read_parts(table_dir(root, "votes", 1)) == []


def test_upload_copies_a_local_tree(root, tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "f.txt").write_text("hi")
    (root / "up").upload(tmp_path / "src")
    assert (root / "up" / "sub" / "f.txt").read_text() == "hi"


def test_locations_name_what_is_wrong():
    assert scheme_problem("/abs/run") is None and scheme_problem("s3://b/run") is None
    assert "'ftp'" in scheme_problem("ftp://host/run")
    assert "no bucket" in scheme_problem("s3://")
    assert join("s3://b/runs/", "x") == "s3://b/runs/x" and join("/runs", "x") == "/runs/x"
    assert str(StoragePath.of("s3://b/runs/x") / "data") == "s3://b/runs/x/data"
