"""Settings the driver hands Ray Train: the controller's poll interval, the worker threads."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from rlaif_ray.config import load_config
from rlaif_ray.train.trainer import HEALTH_CHECK_ENV, set_health_check_interval
from rlaif_ray.train.worker import torch_threads


def test_the_controller_polls_at_the_configured_interval_unless_the_user_set_one(
        monkeypatch):
    monkeypatch.setenv(HEALTH_CHECK_ENV, "")  # restored (or removed) after the test
    monkeypatch.delenv(HEALTH_CHECK_ENV)
    set_health_check_interval(load_config(None, ["trainer.health_check_interval_s=0.5"]))
    assert os.environ[HEALTH_CHECK_ENV] == "0.5"
    monkeypatch.setenv(HEALTH_CHECK_ENV, "3")
    set_health_check_interval(load_config(None, []))
    assert os.environ[HEALTH_CHECK_ENV] == "3"


def test_worker_threads_follow_the_cpu_allocation_unless_set():
    def threads(*overrides):
        return torch_threads(OmegaConf.to_container(load_config(None, list(overrides)).trainer))

    assert threads() == 1
    assert threads("trainer.resources.num_cpus=4") == 4
    assert threads("trainer.resources.num_cpus=0.5") == 1
    assert threads("trainer.resources.num_cpus=4", "trainer.torch_threads=2") == 2
