"""PPO math against hand-computed values, masks included."""

import math

import pytest
import torch

from rlaif_ray.train.kl import kl_estimate
from rlaif_ray.train.ppo import (
    entropy_from_logits,
    gae,
    masked_mean,
    masked_whiten,
    policy_loss,
    shaped_rewards,
    token_logprobs,
    value_loss,
)

T = torch.tensor


def test_masked_mean_ignores_masked_positions():
    assert masked_mean(T([[1.0, 100.0, 3.0]]), T([[1.0, 0.0, 1.0]])).item() == 2.0


def test_masked_whiten():
    out = masked_whiten(T([[1.0, 3.0, 50.0]]), T([[1.0, 1.0, 0.0]]))
    assert out[0, :2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)
    assert out[0, 2].item() == 0.0


def test_gae_by_hand_with_prompt_position_masked():
    rewards, values, mask = T([[0.0, 0.0, 1.0]]), T([[0.5, 0.4, 0.3]]), T([[0.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.0, 0.6, 0.7])
    assert ret[0].tolist() == pytest.approx([0.0, 1.0, 1.0])
    adv, _ = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.0, 0.185, 0.7])


def test_gae_bootstraps_zero_after_last_response_token_and_skips_padding():
    rewards, values, mask = T([[0.0, 1.0, 5.0]]), T([[0.2, 0.3, 9.0]]), T([[1.0, 1.0, 0.0]])
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # t=1: delta = 1 + 0 - 0.3 = 0.7 (padding's value 9 is never used); t=0: 0 + 0.3 - 0.2 + 0.7
    assert adv[0].tolist() == pytest.approx([0.8, 0.7, 0.0])


def test_shaped_rewards_put_judge_reward_on_last_response_token():
    kl, mask = T([[0.5, 0.5, 0.5, 0.5]]), T([[0.0, 1.0, 1.0, 0.0]])
    out = shaped_rewards(kl, T([2.0]), mask, kl_coef=0.1)
    assert out[0].tolist() == pytest.approx([0.0, -0.05, 2.0 - 0.05, 0.0])


def test_policy_loss_clipping():
    mask = T([[1.0, 1.0]])
    logp, old = T([[math.log(2.0), math.log(2.0)]]), T([[0.0, 0.0]])
    loss, frac = policy_loss(logp, old, T([[1.0, -1.0]]), mask, clip_eps=0.2)
    # A=+1: max(-2, -1.2) = -1.2 (clipped); A=-1: max(2, 1.2) = 2 (not clipped)
    assert loss.item() == pytest.approx((-1.2 + 2.0) / 2)
    assert frac.item() == pytest.approx(0.5)
    loss, frac = policy_loss(old, old, T([[1.0, 3.0]]), mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(-2.0) and frac.item() == 0.0


def test_value_loss_clipping():
    loss = value_loss(T([[2.0]]), T([[0.0]]), T([[1.0]]), T([[1.0]]), clip=0.5)
    # unclipped (2-1)^2 = 1, clipped (0.5-1)^2 = 0.25 -> max 1 -> 0.5
    assert loss.item() == pytest.approx(0.5)


def test_kl_estimators():
    logp, ref = T([math.log(0.5)]), T([math.log(0.25)])
    r = math.log(2.0)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(r)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(r * r / 2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + r)
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(logp, ref, "k4")


def test_token_logprobs_and_entropy():
    logits = torch.log(T([[[0.5, 0.25, 0.25]]]))
    assert token_logprobs(logits, T([[1]])).item() == pytest.approx(math.log(0.25))
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert entropy_from_logits(logits).item() == pytest.approx(expected)
