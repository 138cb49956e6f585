"""The actor's loss object on hand-made CPU tensors: each term appears exactly when its
setting asks for it, with the value the PPO math gives."""

from __future__ import annotations

import pytest
import torch

from rlaif_ray.train.advantages import estimator
from rlaif_ray.train.batch import Batch
from rlaif_ray.train.experience import Experience
from rlaif_ray.train.kl import kl_estimate
from rlaif_ray.train.loss import PolicyLoss
from rlaif_ray.train.ppo import entropy_from_logits, masked_mean, policy_loss, value_loss
from rlaif_ray.train.settings import TrainerConfig

B, R, V = 3, 4, 7


def _piece(seed: int = 0) -> Experience:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, R)
    mask[0, 3:] = 0  # a shorter answer
    zeros = torch.zeros(B, 2, dtype=torch.long)
    batch = Batch(input_ids=zeros, attention_mask=zeros, position_ids=zeros, mask=mask,
                  gen_logprobs=-torch.rand(B, R, generator=g), rewards=torch.rand(B, generator=g),
                  advantages=torch.zeros(B), prompt_width=2)
    return Experience(batch, old_logp=-torch.rand(B, R, generator=g),
                      ref_logp=-torch.rand(B, R, generator=g),
                      advantages=torch.randn(B, R, generator=g), is_weights=mask.clone(),
                      values=torch.randn(B, R, generator=g),
                      returns=torch.randn(B, R, generator=g))


def _policy(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(B, R, V, generator=torch.Generator().manual_seed(seed),
                         requires_grad=True)
    logp = torch.log_softmax(logits, -1)[..., 0]
    return logp, logits


def test_plain_loss_is_the_clipped_surrogate_with_its_statistics():
    piece, (logp, logits) = _piece(), _policy()
    loss, stats = PolicyLoss(clip_eps=0.2)(logp, logits, piece)
    mask = piece.batch.mask
    expected, clipped = policy_loss(logp, piece.old_logp, piece.advantages, mask, 0.2,
                                    piece.is_weights)
    torch.testing.assert_close(loss, expected)
    assert stats["clip_fraction"] == clipped
    torch.testing.assert_close(stats["entropy"],
                               masked_mean(entropy_from_logits(logits), mask))
    torch.testing.assert_close(stats["policy_kl"],
                               masked_mean(kl_estimate(piece.old_logp, logp, "k3"), mask))
    torch.testing.assert_close(stats["logprob_gap"], masked_mean(
        (logp - piece.batch.gen_logprobs).abs(), mask))
    assert "value_loss" not in stats and not any(s.requires_grad for s in stats.values())
    loss.backward()  # the entropy is a metric only: no gradient reaches it
    assert logits.grad is not None


def test_each_term_is_added_when_its_setting_asks():
    piece, (logp, logits) = _piece(), _policy()
    mask = piece.batch.mask
    base, _ = PolicyLoss(clip_eps=0.2)(logp, logits, piece)
    with_entropy, stats = PolicyLoss(clip_eps=0.2, entropy_coef=0.1)(logp, logits, piece)
    torch.testing.assert_close(with_entropy, base - 0.1 * stats["entropy"])
    kl = masked_mean(kl_estimate(logp, piece.ref_logp, "k2"), mask)
    with_kl, _ = PolicyLoss(clip_eps=0.2, kl_term=True, kl_coef=0.5,
                            kl_estimator="k2")(logp, logits, piece)
    torch.testing.assert_close(with_kl, base + 0.5 * kl)
    values = piece.values + 0.3
    shared, stats = PolicyLoss(clip_eps=0.2, shared_critic=True, vf_coef=0.25,
                               value_clip=0.1)(logp, logits, piece, values)
    v_loss = value_loss(values, piece.values, piece.returns, mask, 0.1)
    torch.testing.assert_close(stats["value_loss"], v_loss)
    torch.testing.assert_close(shared, base + 0.25 * v_loss)
    with pytest.raises(ValueError, match="value head"):
        PolicyLoss(clip_eps=0.2, shared_critic=True)(logp, logits, piece)


@pytest.mark.parametrize("name, kl_term", [("gae", False), ("reinforce_pp", False),
                                           ("grpo", True), ("rloo", True)])
def test_the_kl_is_a_loss_term_only_where_the_estimator_keeps_it_out_of_the_reward(
        name, kl_term):
    tr = TrainerConfig(clip_eps=0.3, entropy_coef=0.0, kl_coef=0.01, kl_estimator="k3",
                       advantage_estimator=name, critic="shared", vf_coef=0.5, value_clip=0.2)
    loss = PolicyLoss.from_config(tr, estimator(name))
    assert (loss.clip_eps, loss.kl_term, loss.kl_estimator) == (0.3, kl_term, "k3")
    assert loss.shared_critic == (name == "gae")  # only an estimator with a critic
