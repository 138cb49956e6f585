"""The LLM-judge path end to end: the default run learns from `tiny-judge` alone (and
counts and prices the judge's tokens), and the bias metrics see a judge's leaning:
`position_bias` a variant of tiny-judge built to favour the first slot, `length_bias` a
judge that favours long answers (real vLLM judges, Ray, DeepSpeed)."""

import pytest
from toy import answers, toy_args

from rlaif_ray.config import load_config
from rlaif_ray.data.records import read_parts, table_dir
from rlaif_ray.pipeline import run_rlaif

pytestmark = pytest.mark.slow


def judge_config(model_cache, run_dir, judge, *overrides):
    """The packaged default (whose only judge is an LLM), judged by `judge`."""
    return load_config("conf/default.yaml", [
        f"run.dir={run_dir}", f"cache_dir={model_cache}", "ray.dashboard=false",
        f"judges=[{{name: judge, kind: llm, model: {judge}, resources: {{num_cpus: 0.5}}}}]",
        *overrides])


def test_default_run_learns_from_the_llm_judge_alone(ray_session, model_cache, tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_config("conf/default.yaml", [f"run.dir={run_dir}", f"cache_dir={model_cache}",
                                             "run.iterations=6",
                                             "judges.0.price_per_mtok={input: 1, output: 2}"])
    assert [j.kind for j in cfg.judges] == ["llm"]
    history = run_rlaif(cfg)
    rewards = [row["reward_mean"] for row in history]
    assert sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2 >= 0.1, rewards
    assert all(row["kept_fraction"] > 0.5 for row in history)  # the judge is consistent
    for row in history:  # the metrics' usage is what the vote rows hold, priced
        votes = read_parts(table_dir(run_dir, "votes", row["iteration"]))
        usage = row["judge_usage"][cfg.judges[0].name]
        assert usage["votes"] == len(votes) == row["judge_votes"]
        assert usage["prompt_tokens"] == sum(v["prompt_tokens"] for v in votes) > 0
        assert usage["completion_tokens"] == sum(v["completion_tokens"] for v in votes) > 0
        # the engine reads a request's prompt once for its votes: counted on the first
        assert sum(v["prompt_tokens"] > 0 for v in votes) == len(votes) / cfg.voting.votes
        cost = (usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1e6
        assert usage["cost"] == pytest.approx(cost)
        assert row["cost_per_kept_verdict"] == pytest.approx(cost / row["verdicts_kept"])


def test_position_bias_shows_a_first_slot_judge(ray_session, model_cache, tmp_path):
    cfg = judge_config(model_cache, tmp_path / "run", "tiny-judge-first-slot",
                       "rubric.mode=pairwise", "run.iterations=1", "prompts.limit=4",
                       "generator.samples_per_prompt=4")
    [row] = run_rlaif(cfg)
    assert row["position_bias"] > 0.7, row["position_bias"]


# A rule judge whose score grows with an answer's characters (12, 24 and 36 or more).
LONG_JUDGE = ("judges=[{name: long, kind: rule, checks: [{type: regex, pattern: '[\\s\\S]{12}'}, "
              "{type: regex, pattern: '[\\s\\S]{24}'}, {type: regex, pattern: '[\\s\\S]{36}'}]}]")


def test_length_bias_shows_a_judge_that_favours_long_answers(ray_session, model_cache, toy_run,
                                                             tmp_path):
    """The toy run's first iteration judged for length instead: the same policy, prompts
    and seed give the same answers, which the vowel judge's rewards hardly tie to length."""
    run_dir = tmp_path / "long"
    args = toy_args(model_cache, run_dir, 1) + [LONG_JUDGE]
    biased, = run_rlaif(load_config(args[0], args[1:]))
    faithful = toy_run[1][0]
    assert answers(run_dir, 0) == answers(toy_run[0], 0)
    assert biased["length_bias"] > 0.5, biased["length_bias"]
    assert biased["length_bias"] > faithful["length_bias"] + 0.3, (biased, faithful)
