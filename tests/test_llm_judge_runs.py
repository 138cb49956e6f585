"""The LLM-judge path end to end: the default run learns from `tiny-judge` alone, and the
bias metrics see the leanings built into its variants (real vLLM judges, Ray, DeepSpeed)."""

import pytest

from rlaif_ray.config import load_config
from rlaif_ray.pipeline import run_rlaif

pytestmark = pytest.mark.slow


def judge_config(model_cache, run_dir, judge, *overrides):
    """The packaged default (whose only judge is an LLM), judged by `judge`."""
    return load_config("conf/default.yaml", [
        f"run.dir={run_dir}", f"cache_dir={model_cache}", "ray.dashboard=false",
        f"judges=[{{name: judge, kind: llm, model: {judge}, resources: {{num_cpus: 0.5}}}}]",
        *overrides])


def test_default_run_learns_from_the_llm_judge_alone(ray_session, model_cache, tmp_path):
    cfg = load_config("conf/default.yaml", [f"run.dir={tmp_path / 'run'}",
                                             f"cache_dir={model_cache}", "run.iterations=6"])
    assert [j.kind for j in cfg.judges] == ["llm"]
    history = run_rlaif(cfg)
    rewards = [row["reward_mean"] for row in history]
    assert sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2 >= 0.1, rewards
    assert all(row["kept_fraction"] > 0.5 for row in history)  # the judge is consistent


def test_position_bias_shows_a_first_slot_judge(ray_session, model_cache, tmp_path):
    cfg = judge_config(model_cache, tmp_path / "run", "tiny-judge-first-slot",
                       "rubric.mode=pairwise", "run.iterations=1", "prompts.limit=4",
                       "generator.samples_per_prompt=4")
    [row] = run_rlaif(cfg)
    assert row["position_bias"] > 0.7, row["position_bias"]


def test_length_bias_shows_a_judge_that_favours_long_answers(ray_session, model_cache,
                                                             tmp_path):
    # The same policy and seed: both judges see the same answers.
    biased, = run_rlaif(judge_config(model_cache, tmp_path / "long", "tiny-judge-long",
                                     "run.iterations=1"))
    faithful, = run_rlaif(judge_config(model_cache, tmp_path / "faithful", "tiny-judge",
                                       "run.iterations=1"))
    assert biased["length_bias"] > 0.3, biased["length_bias"]
    assert biased["length_bias"] > faithful["length_bias"] + 0.15, (biased, faithful)

