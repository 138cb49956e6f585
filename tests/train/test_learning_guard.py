"""The learning guard: two of the learning bench's tasks (bench/learning.py), 3 seeds each,
with the shipped defaults. A change to the update, batching, sampling or sync path that
learns less fails it, however fast its iterations are.

The reading is the gain after `ITERATIONS` iterations (the mean reward of the last two minus
the first), its median over the seeds. Each floor is 80% of the median the bench measured
for the same reading, seeds and defaults (2026-12-06, `trainer.clip_eps` 0.3 and
`trainer.actor_lr` 4e-3: `digits` 0.78 [0.75, 0.82], `plain-ascii` 0.65 [0.61, 0.71];
docs/learning.md): a loss of a fifth fails, and a host whose floating point rounds
differently passes. (The earlier defaults read 0.75 and 0.65 with clip 0.2, and 0.70 and
0.516 with `actor_lr` 2e-3: `plain-ascii` just under its floor.)"""

import statistics

import pytest

from bench.learning import TASKS
from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.pipeline import run_rlaif

pytestmark = pytest.mark.slow

ITERATIONS = 6
SEEDS = (0, 1, 2)
FLOORS = {"digits": 0.62, "plain-ascii": 0.51}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_the_defaults_learn_as_the_learning_bench_measured(ray_session, model_cache, tmp_path,
                                                          name):
    gains = []
    for seed in SEEDS:
        cfg = load_config(default_config_path(), [
            f"run.dir={tmp_path / f'seed{seed}'}", f"cache_dir={model_cache}",
            f"run.seed={seed}", f"run.iterations={ITERATIONS}", *TASKS[name].all_overrides])
        rewards = [row["reward_mean"] for row in run_rlaif(cfg)]
        gains.append(statistics.fmean(rewards[-2:]) - rewards[0])
    assert statistics.median(gains) >= FLOORS[name], gains
