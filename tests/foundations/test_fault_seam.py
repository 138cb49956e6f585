"""The fault seam's pause: a run told to stand still at a point goes on once the resume file
exists, and never waits past its bound when nobody creates it."""

import time

from rlaif_ray import faults


def test_a_pause_goes_on_when_its_file_exists(monkeypatch, tmp_path):
    resume = tmp_path / "go"
    resume.touch()
    monkeypatch.setenv(faults.ENV, f"train@0/pause={resume}")
    start = time.monotonic()
    faults.kill_point("train", 0)
    assert time.monotonic() - start < faults.PAUSE_BOUND_S / 10


def test_a_pause_nobody_ends_stops_at_its_bound(monkeypatch, tmp_path):
    monkeypatch.setenv(faults.ENV, f"sync@1/pause={tmp_path / 'never'}")
    monkeypatch.setattr(faults, "PAUSE_BOUND_S", 0.5)
    start = time.monotonic()
    faults.kill_point("sync", 1)
    assert 0.5 <= time.monotonic() - start < 30


def test_a_pause_elsewhere_does_not_wait(monkeypatch, tmp_path):
    monkeypatch.setenv(faults.ENV, f"sync@1/pause={tmp_path / 'never'}")
    start = time.monotonic()
    faults.kill_point("sync", 0)
    faults.kill_point("train", 1)
    assert time.monotonic() - start < faults.PAUSE_BOUND_S / 10
