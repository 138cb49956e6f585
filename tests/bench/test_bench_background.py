"""The background bench counts other processes' CPU only while the trainer is busy."""

from collections import Counter

import pytest

from bench.background import busy_share, process_name

TRAINER, OTHER, SELF = 10, 20, 30


def test_only_intervals_where_the_trainer_is_busy_count():
    samples = [
        (0.0, {TRAINER: 0.0, OTHER: 0.0, SELF: 0.0}),
        (1.0, {TRAINER: 1.9, OTHER: 0.1, SELF: 0.5}),   # busy: counts
        (2.0, {TRAINER: 2.4, OTHER: 0.6, SELF: 0.6}),   # trainer at 0.5 cores: left out
        (3.0, {TRAINER: 4.0, OTHER: 0.8, SELF: 0.7}),   # busy: counts
    ]
    busy_s, others = busy_share(samples, TRAINER, {SELF})
    assert busy_s == 2.0
    assert others == Counter({OTHER: 0.1 + 0.2})


def test_processes_that_come_or_go_and_a_missing_trainer_are_skipped():
    samples = [
        (0.0, {OTHER: 0.0}),                            # trainer not started: skipped
        (0.5, {TRAINER: 0.0, OTHER: 0.1}),
        (1.0, {TRAINER: 1.0, OTHER: 0.2, 40: 5.0}),     # 40 is new: no interval for it
        (1.5, {TRAINER: 2.0, 40: 5.1}),                 # OTHER ended
    ]
    busy_s, others = busy_share(samples, TRAINER, set())
    assert busy_s == 1.0
    assert set(others) == {OTHER, 40}
    assert others[OTHER] == pytest.approx(0.1) and others[40] == pytest.approx(0.1)


@pytest.mark.parametrize("command, name", [
    ("ray::TrainController.run", "ray::TrainController.run"),
    ("/venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server --port=1", "gcs_server"),
    ("/venv/bin/python -u /venv/lib/ray/_private/log_monitor.py --x=1", "log_monitor.py"),
    ("/venv/bin/python -m rlaif_ray.cli run conf.yaml", "rlaif_ray.cli"),
    ("", "?"),
])
def test_processes_are_named_by_what_they_run(command, name):
    assert process_name(command) == name
