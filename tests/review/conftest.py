"""The review tests' run directories (`review_runs`), in a local directory."""

import pytest
from review_runs import write_pairwise_run, write_pointwise_run


@pytest.fixture
def pointwise_run(tmp_path):
    """`write_pointwise_run` in a local directory: (run_dir, rubric)."""
    run_dir = tmp_path / "pointwise"
    return run_dir, write_pointwise_run(run_dir)


@pytest.fixture
def pairwise_run(tmp_path):
    """`write_pairwise_run` in a local directory: (run_dir, rubric)."""
    run_dir = tmp_path / "pairwise"
    return run_dir, write_pairwise_run(run_dir)
