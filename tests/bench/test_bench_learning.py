"""The learning bench's reading of runs: targets, medians over seeds, TRL's reward and work."""

import pytest

from bench.learning import TASKS, _median_reached, final, summarize, to_target, trl_work
from bench.peer_trl import rule_reward
from rlaif_ray.config import default_config_path, load_config


def run(*score: float) -> dict:
    return {"score": list(score), "wall_s": [10.0 * (k + 1) for k in range(len(score))],
            "startup_s": 5.0}


def test_the_target_is_a_share_of_the_best_arms_median_final_score():
    arms = {"a": [run(0.1, 0.5, 0.7, 0.9), run(0.2, 0.3, 0.5, 0.5), run(0.1, 0.4, 0.6, 0.8)],
            "b": [run(0.1, 0.2, 0.2, 0.3)] * 3}
    result = summarize(arms)
    assert result["target"] == pytest.approx(0.8 * 0.7)  # a's finals: 0.8, 0.5, 0.7
    a = result["arms"]["a"]
    assert a["iterations_to_target"] == [3, None, 3]
    assert a["median_iterations_to_target"] == 3 and a["median_seconds_to_target"] == 30
    assert a["median_training_seconds_to_target"] == 25
    assert result["arms"]["b"]["median_iterations_to_target"] is None  # never reached
    assert a["curve"][0] == {"median": 0.1, "min": 0.1, "max": 0.2}
    assert a["gain"]["median"] == pytest.approx(0.6)


def test_a_seed_that_never_reaches_the_target_counts_as_slowest():
    assert _median_reached([2, None, 4]) == 4
    assert _median_reached([2, None, None]) is None
    assert _median_reached([2, 6, None, 4]) == 5  # even count: the mean of the middle two
    assert to_target(run(0.1, 0.2), 0.5) == (None, None)
    assert final([0.0, 0.4, 0.6]) == pytest.approx(0.5)


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if t.rule])
def test_trl_is_rewarded_by_the_rule_judges_code_with_the_defaults_work(name):
    task = TASKS[name]
    cfg = load_config(default_config_path(), task.all_overrides)
    assert [j.kind for j in cfg.judges] == ["rule"]
    work, optim = trl_work(task, 8)
    assert (work.model, work.prompts, work.samples, work.tokens) == (
        cfg.generator.model, cfg.prompts.limit, cfg.generator.samples_per_prompt,
        cfg.generator.max_tokens)
    assert (optim.lr, optim.kl, optim.epochs, optim.micro_batch, optim.clip) == (
        cfg.trainer.actor_lr, cfg.trainer.kl_coef, cfg.trainer.ppo_epochs,
        cfg.trainer.micro_batch_size, cfg.trainer.clip_eps)
    assert rule_reward(task.rule)("") in (0.0, 1.0)


def test_the_graded_task_scores_a_third_per_digit_threshold():
    score = rule_reward(TASKS["digits"].rule)
    assert [score(t) for t in ("none", "a1", "1 and 2", "1, 2, 3 and 4")] == pytest.approx(
        [0, 1 / 3, 2 / 3, 1])
    whole = rule_reward(TASKS["plain-ascii"].rule)
    assert (whole("plain text."), whole("caf\u00e9"), whole("tab\tin")) == (1.0, 0.0, 0.0)
    prefix = rule_reward(TASKS["ascii-prefix"].rule)
    assert [prefix("a" * 16 + "\u00e9"), prefix("a" * 40 + "\u00e9"), prefix("a" * 64)] == \
        pytest.approx([1 / 3, 2 / 3, 1])
    first = rule_reward(TASKS["letter-start"].rule)
    assert (first("Word"), first(" word"), first("9")) == (1.0, 0.0, 0.0)
