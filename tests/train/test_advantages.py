"""Each advantage estimator's formula, worked by hand (no Ray, no DeepSpeed)."""

import pytest
import torch

from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.train.advantages import ESTIMATORS, estimator, group_advantages, returns_to_go


def test_grpo_normalises_by_the_group_mean_and_std():
    rewards = [1.0, 0.0, 0.5, 0.2, 0.2]
    groups = ["p", "p", "p", "q", "q"]
    got = group_advantages("grpo", rewards, groups, eps=0.0)
    # group p: mean 0.5, sample std sqrt(((0.5)^2 + (0.5)^2 + 0) / 2) = 0.5
    assert got[:3] == pytest.approx([1.0, -1.0, 0.0])
    assert got[3:] == [0.0, 0.0]  # no spread in group q: no signal (and no division by 0)
    centred = group_advantages("grpo", rewards, groups, normalize_std=False)
    assert centred[:3] == pytest.approx([0.5, -0.5, 0.0])


def test_rloo_subtracts_the_mean_of_the_other_answers():
    got = group_advantages("rloo", [1.0, 0.0, 0.5, 0.9], ["p", "p", "p", "lonely"])
    assert got == pytest.approx([1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5, 0.0])


def test_reinforce_pp_return_sums_the_rewards_to_the_end_of_the_answer():
    rewards = torch.tensor([[0.0, -0.1, -0.2, 1.0, 9.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    assert returns_to_go(rewards, mask)[0].tolist() == pytest.approx([0.0, 0.7, 0.8, 1.0, 0.0])


def test_only_gae_needs_a_critic_and_kl_goes_where_each_estimator_puts_it():
    assert [n for n, e in ESTIMATORS.items() if e.needs_critic] == ["gae"]
    assert {n for n, e in ESTIMATORS.items() if e.kl_in_reward} == {"gae", "reinforce_pp"}
    with pytest.raises(ValueError, match="choose one of gae, grpo, rloo, reinforce_pp"):
        estimator("ppo2")


def test_the_config_names_the_valid_estimators():
    assert load_config(None, ["trainer.advantage_estimator=rloo"]).trainer \
        .advantage_estimator == "rloo"
    with pytest.raises(ConfigError, match=r"key 'trainer.advantage_estimator' must be one of "
                                          r"gae, grpo, rloo, reinforce_pp"):
        load_config(None, ["trainer.advantage_estimator=ppo2"])


@pytest.fixture
def registry():
    """The estimator registry, restored to the built-in estimators afterwards."""
    saved = dict(ESTIMATORS)
    yield ESTIMATORS
    ESTIMATORS.clear()
    ESTIMATORS.update(saved)


def test_an_estimator_registered_in_one_place_is_one_the_config_and_update_accept(registry):
    """Adding an estimator is a function and a `register` call: the config names it, and
    `group_advantages` runs it on each prompt group."""
    from rlaif_ray.train import advantages

    def centred(rewards, normalize_std, eps):
        mean = sum(rewards) / len(rewards)
        return [r - mean for r in rewards]

    advantages.register(advantages.Estimator("centred", needs_critic=False,
                                             kl_in_reward=False, group=centred))
    cfg = load_config(None, ["trainer.advantage_estimator=centred"])
    assert advantages.critic_kind(cfg.trainer) is None
    assert group_advantages("centred", [1.0, 0.0, 0.2], ["p", "p", "q"]) == [0.5, -0.5, 0.0]
    with pytest.raises(ValueError, match="exactly one of group or tokens"):
        advantages.register(advantages.Estimator("both", needs_critic=False,
                                                 kl_in_reward=True))
    with pytest.raises(ValueError, match="has no group baseline"):
        group_advantages("gae", [1.0, 0.0], ["p", "p"])
