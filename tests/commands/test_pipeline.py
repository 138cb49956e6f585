"""The RLAIF loop end to end on real vLLM, Ray Train and DeepSpeed (CPU): what a run leaves,
each advantage estimator and critic learning a toy task, bf16, async mode, ZeRO 2/3 with two
workers, and checkpoint/resume. (The collective weight sync to two replicas: the trainer-kill
test of tests/commands/test_faults.py.)"""

import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file
from toy import TOY_JUDGE, answers

from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.pipeline import run_rlaif
from rlaif_ray.review.queue import QUEUE_STATUSES
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.sync.probe import probe_tolerance
from rlaif_ray.train.checkpoints import PROBE_FILE, list_checkpoints

pytestmark = pytest.mark.slow



def toy_config(model_cache, run_dir, *overrides):
    return load_config("conf/default.yaml", [
        f"run.dir={run_dir}", f"cache_dir={model_cache}", TOY_JUDGE, *overrides])


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_finished_run_leaves_metrics_plots_checkpoints_and_a_review_queue(toy_run):
    """What a run leaves (the toy run: 3 iterations, never interrupted). That the defaults
    learn is the learning guard's business (tests/train/test_learning_guard.py)."""
    run_dir, history = toy_run
    assert read_metrics(run_dir) == json.loads(json.dumps(history))
    assert [row["policy_version"] for row in history] == [0, 1, 2]
    for row in history:
        assert row["logprob_gap"] < 1e-3  # trainer and generators hold the same weights
        assert row["sync_probe_gap"] < 1e-3
        assert row["train_samples"] == 4 * 4
    assert history[-1]["kl"] > history[0]["kl"]  # the policy moved away from its reference
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 3
    assert summary["reward_first"] == history[0]["reward_mean"]
    assert summary["reward_last"] == history[-1]["reward_mean"]
    startup = summary["startup"]  # this invocation's fixed costs, from the run's start
    assert set(startup) == {"engines_ready_s", "trainer_ready_s", "shutdown_s"}
    assert all(0 < seconds < 600 for seconds in startup.values()), startup
    for name in ("reward", "kl", "kept_fraction", "stage_times"):
        assert (run_dir / "plots" / f"{name}.png").stat().st_size > 1000
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "config.yaml").is_file()
    queue = (run_dir / "review" / "queue.jsonl").read_text().splitlines()
    low_confidence = sum(r["status"] in QUEUE_STATUSES for k in range(3) for r in pq.read_table(
        run_dir / "data" / "verdicts" / f"iter={k}").to_pylist())
    assert len(queue) == low_confidence  # every verdict that did not stand awaits a person
    # the newest trainer.keep_checkpoints (2), and no local copy left in the temp dir
    assert [c.iteration for c in list_checkpoints(run_dir)] == [1, 2]
    fit = max(p.name for p in (run_dir / "checkpoints").iterdir())
    assert not list(Path(tempfile.gettempdir()).glob(f"rlaif-ckpt-{fit}-*"))


@pytest.mark.parametrize("method", ["rloo", "reinforce_pp"])  # grpo: the bfloat16 test
def test_critic_free_estimators_learn_the_toy_task(ray_session, model_cache, tmp_path, method):
    run_dir = tmp_path / method
    history = run_rlaif(toy_config(model_cache, run_dir, "run.iterations=8",
                                   f"trainer.advantage_estimator={method}"))
    rewards = [row["reward_mean"] for row in history]
    assert sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2 >= 0.2, rewards
    assert all(row["value_loss"] is None for row in history)  # no critic was trained
    assert all(row["logprob_gap"] < 1e-3 for row in history)
    newest = list_checkpoints(run_dir)[-1].path
    assert (newest / "actor").is_dir() and not (newest / "critic").exists()


def test_a_critic_on_the_policys_trunk_learns_the_toy_task(ray_session, model_cache,
                                                           policy_path, tmp_path):
    run_dir = tmp_path / "shared-critic"
    history = run_rlaif(toy_config(model_cache, run_dir, "run.iterations=8",
                                   "trainer.critic=shared"))
    rewards = [row["reward_mean"] for row in history]
    assert sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2 >= 0.2, rewards
    assert all(row["value_loss"] > 0 for row in history)
    for row in history:  # the generators load the policy without the value head
        assert row["logprob_gap"] < 1e-3 and row["sync_probe_gap"] < 1e-3
    newest = list_checkpoints(run_dir)[-1].path
    assert (newest / "actor").is_dir() and not (newest / "critic").exists()
    served = load_file(run_dir / "policy" / "model.safetensors")
    assert set(served) == set(load_file(Path(policy_path) / "model.safetensors"))


def test_a_bfloat16_trainer_on_cpu_learns_the_toy_task_with_float32_attention(
        ray_session, model_cache, tmp_path):
    """bf16 weights on both sides; the trainer's attention is sdpa_fp32 by default on CPU,
    and the generators' bf16 engine still passes every sync check. The estimator is grpo,
    which thereby learns the toy task too, with no critic."""
    run_dir = tmp_path / "bf16"
    config = toy_config(model_cache, run_dir, "run.iterations=8", "trainer.dtype=bfloat16",
                        "generator.dtype=bfloat16", "trainer.advantage_estimator=grpo")
    history = run_rlaif(config)
    rewards = [row["reward_mean"] for row in history]
    assert sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2 >= 0.2, rewards
    assert [row["policy_version"] for row in history] == list(range(8))
    tolerance = probe_tolerance(config.generator, "bfloat16")
    assert all(0 < row["sync_probe_gap"] <= tolerance for row in history), history
    # The trainer's log-probs of the sampled answers match the generators' to bf16's
    # rounding (1e-3 here; 0.16-0.32 when the trainer's padding masks were lost).
    assert all(row["logprob_gap"] < 0.02 for row in history), history
    assert all(row["value_loss"] is None for row in history)
    newest = list_checkpoints(run_dir)[-1].path
    assert (newest / "actor").is_dir() and not (newest / "critic").exists()


def test_async_mode_overlaps_with_lag_at_most_one_and_resumes_at_its_lag(
        ray_session, model_cache, tmp_path):
    run_dir = tmp_path / "async"
    common = ("run.mode=async", "prompts.limit=4")
    history = run_rlaif(toy_config(model_cache, run_dir, "run.iterations=3", *common))
    assert [row["policy_lag_max"] for row in history] == [0, 1, 1]
    # The first batch is of the trainer's own version: its old log-probs are the
    # generator's. Later ones are one version old: recomputed, with importance weights.
    assert [row["generator_old_logprobs"] for row in history] == [1, 0, 0]
    assert history[0]["is_weight_mean"] == 1
    assert all(0 < row["is_weight_mean"] <= 2 for row in history[1:])
    for k in range(3):
        rows = pq.read_table(run_dir / "data" / "candidates" / f"iter={k}").to_pylist()
        assert {r["policy_version"] for r in rows} == {max(k - 1, 0)}
        assert all(r["iteration"] == k for r in rows)

    # Stopped after iteration 1 and resumed: iteration 2 is rolled out with policy 1 (from
    # the checkpoint of iteration 0), as without the stop, then trained from checkpoint 1.
    resumed = tmp_path / "resumed"
    run_rlaif(toy_config(model_cache, resumed, "run.iterations=2", *common))
    again = run_rlaif(toy_config(model_cache, resumed, "run.iterations=3", "run.resume=true",
                                 *common))
    assert [(row["iteration"], row["policy_lag_max"]) for row in again] == [(2, 1)]
    assert answers(resumed, 2) == answers(run_dir, 2)
    for key in ("reward_mean", "policy_loss", "value_loss", "kl", "is_weight_mean"):
        assert again[0][key] == pytest.approx(history[2][key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("stage, critic", [(2, "separate"), (3, "shared")])
def test_zero_stages_with_two_workers(ray_session, model_cache, tmp_path, stage, critic):
    run_dir = tmp_path / f"zero{stage}"
    history = run_rlaif(toy_config(model_cache, run_dir, "run.iterations=2",
                                   "trainer.workers=2", f"trainer.zero_stage={stage}",
                                   f"trainer.critic={critic}",
                                   "prompts.limit=4", "trainer.micro_batch_size=4",
                                   "trainer.mini_batch_size=16"))
    assert len(history) == 2
    for row in history:  # per rank: 16 samples, 2 steps of 2 accumulated micro batches
        assert row["train_samples"] == 4 * 8
        assert row["ppo_epochs_run"] == 4 and len(row["epoch_policy_kl"]) == 4
        assert row["logprob_gap"] < 1e-3  # the gathered weights are the trained ones
        assert row["sync_probe_gap"] < 1e-3
    assert history[1]["kl"] > 0


def test_resume_continues_like_an_uninterrupted_run(ray_session, model_cache, tmp_path,
                                                    monkeypatch, toy_run):
    common = ("prompts.limit=4", "generator.samples_per_prompt=4")  # the toy run's
    straight = toy_run[0]
    resumed = tmp_path / "resumed"
    run_rlaif(toy_config(model_cache, resumed, "run.iterations=2", *common))
    with pytest.raises(ConfigError, match="already holds a run"):
        run_rlaif(toy_config(model_cache, resumed, "run.iterations=3", *common))
    with pytest.raises(ConfigError, match=r"holds a separate critic .*trainer\.critic"):
        run_rlaif(toy_config(model_cache, resumed, "run.iterations=3", "run.resume=true",
                             "trainer.critic=shared", *common))
    # The generators are verified against the probe the trainer saved with the checkpoint:
    # the driver never builds the policy model itself.
    assert all((c.path / PROBE_FILE).size() for c in list_checkpoints(resumed))

    def no_model_on_the_driver(*_):
        raise AssertionError("the driver built the policy to probe it")

    monkeypatch.setattr(GeneratorPool, "reference_probe", no_model_on_the_driver)
    run_rlaif(toy_config(model_cache, resumed, "run.iterations=3", "run.resume=true", *common))

    a, b = read_metrics(straight), read_metrics(resumed)
    assert [r["iteration"] for r in b] == [0, 1, 2]
    for key in ("reward_mean", "policy_loss", "value_loss", "kl", "tokens_generated"):
        assert b[2][key] == pytest.approx(a[2][key], rel=1e-4, abs=1e-6), key

    assert answers(resumed, 2) == answers(straight, 2)
