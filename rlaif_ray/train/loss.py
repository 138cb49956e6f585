"""The actor's loss on one micro batch, as an object (NeMo-RL's `ClippedPGLossFn` shape):
`PolicyLoss.from_config(trainer, estimator)(logp, logits, piece, values)` gives the loss
to back-propagate and its statistics. Pure torch: unit-tested on CPU tensors, without
DeepSpeed or a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlaif_ray.train.advantages import Estimator, critic_kind
from rlaif_ray.train.experience import Experience
from rlaif_ray.train.kl import kl_estimate
from rlaif_ray.train.ppo import entropy_from_logits, masked_mean, policy_loss, value_loss
from rlaif_ray.train.settings import TrainerConfig


@dataclass(frozen=True)
class PolicyLoss:
    """PPO's clipped surrogate (`clip_eps`), minus `entropy_coef` x the entropy, plus
    `kl_coef` x the KL to the reference when the estimator keeps the KL out of the reward
    (`kl_term`: grpo, rloo), plus `vf_coef` x the clipped value loss when the values come
    from a head on the policy's trunk (`shared_critic`)."""

    clip_eps: float
    entropy_coef: float = 0.0
    kl_term: bool = False
    kl_coef: float = 0.0
    kl_estimator: str = "k1"
    shared_critic: bool = False
    vf_coef: float = 0.0
    value_clip: float = 0.2

    @classmethod
    def from_config(cls, tr: TrainerConfig, method: Estimator) -> PolicyLoss:
        """The loss of a `trainer` config section with the estimator `method`."""
        return cls(clip_eps=tr.clip_eps, entropy_coef=tr.entropy_coef,
                   kl_term=not method.kl_in_reward, kl_coef=tr.kl_coef,
                   kl_estimator=tr.kl_estimator,
                   shared_critic=critic_kind(tr) == "shared", vf_coef=tr.vf_coef,
                   value_clip=tr.value_clip)

    def __call__(self, logp: torch.Tensor, logits: torch.Tensor, piece: Experience,
                 values: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, statistics) of the policy's answer log-probs `logp` and `logits` (with
        gradients) on the micro batch `piece`; `values` from the shared head, if any.
        The statistics are detached: policy_loss, clip_fraction, entropy, policy_kl (k3
        from the old policy), logprob_gap (to the generator's log-probs), value_loss."""
        mask = piece.batch.mask
        pg_loss, clip_fraction = policy_loss(logp, piece.old_logp, piece.advantages, mask,
                                             self.clip_eps, piece.is_weights)
        loss = pg_loss
        if self.entropy_coef:
            entropy = masked_mean(entropy_from_logits(logits), mask)
            loss = loss - self.entropy_coef * entropy
        else:  # a metric only: no backward through the whole vocabulary
            entropy = masked_mean(entropy_from_logits(logits.detach()), mask)
        if self.kl_term:
            loss = loss + self.kl_coef * masked_mean(
                kl_estimate(logp, piece.ref_logp, self.kl_estimator), mask)
        stats: dict[str, torch.Tensor] = {}
        if self.shared_critic:
            if values is None:
                raise ValueError("a shared critic's loss needs the value head's values")
            v_loss = value_loss(values, piece.values, piece.returns, mask, self.value_clip)
            loss = loss + self.vf_coef * v_loss
            stats["value_loss"] = v_loss.detach()
        stats |= {"policy_loss": pg_loss.detach(), "clip_fraction": clip_fraction,
                  "entropy": entropy.detach(),
                  "policy_kl": masked_mean(kl_estimate(piece.old_logp, logp.detach(), "k3"),
                                           mask),
                  "logprob_gap": masked_mean((logp.detach() - piece.batch.gen_logprobs)
                                             .abs(), mask)}
        return loss, stats
