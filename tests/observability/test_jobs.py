"""Job submission logic without a cluster: the job's name and where its outputs go."""

from datetime import UTC, datetime

import pytest

from rlaif_ray.cli_handlers import shared_run_dir
from rlaif_ray.errors import ConfigError
from rlaif_ray.jobs import submission_id


def test_submission_id_is_readable_and_named_after_the_run():
    now = datetime(2026, 11, 28, 21, 5, 9, tzinfo=UTC)
    assert submission_id("/shared/runs/llama 8b/", now) == "rlaif-llama-8b-20261128-210509"


def test_a_job_never_writes_to_its_temporary_working_dir():
    assert shared_run_dir("/shared/runs/a", None) == "/shared/runs/a"
    assert shared_run_dir("s3://b/runs/a", None) == "s3://b/runs/a"
    assert shared_run_dir("runs/a", "/shared/") == "/shared/runs/a"
    assert shared_run_dir("runs/a", "gs://b/runs/") == "gs://b/runs/runs/a"
    for storage in (None, "relative/too"):
        with pytest.raises(ConfigError, match=r"run.dir 'runs/a' is relative.*--storage"):
            shared_run_dir("runs/a", storage)
    with pytest.raises(ConfigError, match=r"--storage 'ftp://h/x' has scheme 'ftp'"):
        shared_run_dir("runs/a", "ftp://h/x")


def test_a_run_dir_uri_pyarrow_cannot_open_is_refused_before_anything_starts():
    from rlaif_ray.config import load_config

    assert load_config(None, ["run.dir=s3://bucket/runs/a"]).run.dir == "s3://bucket/runs/a"
    with pytest.raises(ConfigError, match=r"key 'run.dir' has scheme 'ftp'; use a local"):
        load_config(None, ["run.dir=ftp://host/runs/a"])
