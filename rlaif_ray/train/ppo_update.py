"""One iteration's PPO update on a trainer worker: the experience (old and reference
log-probs, advantages: `rlaif_ray.train.experience`), then `trainer.ppo_epochs` passes over
the samples (in one order, or reshuffled each epoch with the run's seed: `trainer.shuffle`;
`rlaif_ray.train.minibatch`), one optimizer step per mini batch of
`trainer.mini_batch_size` samples (gradients accumulated over micro batches, each with the
loss of `rlaif_ray.train.loss`), stopping early at `trainer.target_kl`. With a critic
(gae), each epoch's critic steps follow the actor's, in their own order and batch sizes
(`trainer.critic_mini_batch_size`, `trainer.critic_micro_batch_size`); the critic's first
mini batch runs before the actor's first epoch, its forward giving GAE the values
(`first_critic_step`: no separate value pass).

Works on any object with the DeepSpeed engine's training surface (`backward`, `step`,
`set_gradient_accumulation_boundary`), so it runs without Ray."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from rlaif_ray.train.advantages import estimator, group_advantages
from rlaif_ray.train.batch import collate
from rlaif_ray.train.experience import (
    Experience,
    answer_logprobs,
    answer_values,
    kl_rewards,
    make_experience,
    old_logprob_rows,
    pad_to,
    set_advantages,
    values_before_update,
    whiten_advantages,
)
from rlaif_ray.train.kl import kl_estimate
from rlaif_ray.train.loss import PolicyLoss
from rlaif_ray.train.minibatch import critic_batching, mini_batches, prompt_groups
from rlaif_ray.train.ppo import gae, masked_mean, value_loss
from rlaif_ray.train.samples import TrainingSample
from rlaif_ray.train.settings import TrainerConfig
from rlaif_ray.train.shared_prefix import answer_outputs


def all_mean(values: dict[str, float], world: int,
             device: torch.device | None = None) -> dict[str, float]:
    """`values` averaged over the `world` ranks (every rank must call), reduced on `device`
    (the training device: NCCL reduces CUDA tensors only)."""
    import torch.distributed as dist

    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(tensor)
        tensor /= world
    return dict(zip(values, tensor.tolist(), strict=True))


class _EpochTally:
    """Sums of one epoch's losses and its policy-change statistics, per token or step."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}


def _actor_micro_step(actor, piece: Experience, weight: float, loss: PolicyLoss,
                      tr: TrainerConfig, temperature: float) -> dict[str, torch.Tensor]:
    """Forward and backward of the policy on one micro batch, its loss scaled by its share
    `weight` of the mini batch; returns its statistics (before the step). With a shared
    critic, the same pass gives the values."""
    wanted = ("logits", "values") if loss.shared_critic else ("logits",)
    logits, *values = answer_outputs(actor, piece.batch, wanted, tr.share_prompt_prefix)
    logp, logits = answer_logprobs(logits, piece.batch, temperature)
    total, stats = loss(logp, logits, piece, values[0] if values else None)
    actor.backward(total * weight, scale_wrt_gas=False)
    return stats


def _critic_micro_step(critic, piece: Experience, weight: float,
                       tr: TrainerConfig) -> dict[str, torch.Tensor]:
    """Forward and backward of the critic on one micro batch (see `_actor_micro_step`)."""
    values = answer_values(critic, piece.batch, tr.share_prompt_prefix)
    return _critic_backward(critic, values, piece.values, piece.returns, piece.batch.mask,
                            weight, tr)


def _critic_backward(critic, values: torch.Tensor, old_values: torch.Tensor,
                     returns: torch.Tensor, mask: torch.Tensor, weight: float,
                     tr: TrainerConfig) -> dict[str, torch.Tensor]:
    loss = value_loss(values, old_values, returns, mask, tr.value_clip)
    critic.backward(loss * weight, scale_wrt_gas=False)
    return {"value_loss": loss.detach()}


def first_critic_step(critic, experience: Experience, rewards: torch.Tensor,
                      plan: list[list[torch.Tensor]],
                      tr: TrainerConfig) -> tuple[torch.Tensor, _EpochTally]:
    """The critic's first mini batch (`plan[0]` of its first epoch's `plan`), and every
    row's values before the update, which GAE needs: at the weights from before any step,
    that mini batch's forward *is* its rows' value pass, so the critic does not run it
    twice. The other rows' values come from passes without gradients, before the step.
    Returns the values and the mini batch's tally."""
    batch = experience.batch
    values = torch.zeros_like(experience.old_logp)
    first = torch.zeros(len(values), dtype=torch.bool)
    first[torch.cat(plan[0])] = True
    if not first.all():
        rest = (~first).nonzero().squeeze(-1)
        values[rest] = values_before_update(critic, batch, rest, tr)

    def step(rows: torch.Tensor, weight: float) -> dict[str, torch.Tensor]:
        piece = batch.select(rows)
        mask = piece.mask
        fitted = answer_values(critic, piece, tr.share_prompt_prefix)
        before = fitted.detach() * mask
        _, returns = gae(rewards[rows, :mask.shape[1]], before, mask, tr.gamma, tr.lam)
        values[rows] = pad_to(before, values.shape[1])
        return _critic_backward(critic, fitted, before, returns, mask, weight, tr)

    tally, _ = _epoch(critic, plan[:1], step)
    return values, tally


def _epoch(engine, plan: list[list[torch.Tensor]], micro_step,
           tally: _EpochTally | None = None) -> tuple[_EpochTally, float | None]:
    """One epoch of `engine` in the order of `plan` (its `mini_batches`): an optimizer step
    per mini batch, gradients accumulated over its micro batches, each run by
    `micro_step(rows, weight)`. Returns the epoch's tally (added to `tally` when given) and
    the log-prob gap of its first micro batch (None for the critic)."""
    tally = tally or _EpochTally()
    first_gap = None
    for pieces in plan:
        total = sum(len(rows) for rows in pieces)
        for i, rows in enumerate(pieces):
            # DeepSpeed reduces and updates the weights at the boundary, set for the last
            # piece of the mini batch.
            engine.set_gradient_accumulation_boundary(i == len(pieces) - 1)
            stats = micro_step(rows, len(rows) / total)
            engine.step()
            gap = stats.pop("logprob_gap", None)
            if first_gap is None and gap is not None:
                first_gap = float(gap)
            tally.add(stats)
    return tally, first_gap


def ppo_iteration(actor, critic, ref, samples: list[TrainingSample], tr: TrainerConfig,
                  rank: int, world: int, device: torch.device, pad_id: int,
                  temperature: float, iteration: int = 0, seed: int = 0,
                  top_p: float = 1.0) -> dict[str, Any]:
    """One PPO update on this rank's share of `samples` at trainer policy version
    `iteration`, shuffled with `seed` (the generators sampled at `temperature`, `top_p`);
    metrics averaged over ranks. Every rank gets the same number of samples
    (a remainder below the world size is left out) so collective ops stay in step."""
    method = estimator(tr.advantage_estimator)
    if method.group_baseline:  # over every rank's samples: a group may span ranks
        scalars = group_advantages(method.name, [s.reward for s in samples],
                                   [s.prompt_id for s in samples], tr.grpo_normalize_std)
        samples = [replace(s, advantage=a) for s, a in zip(samples, scalars, strict=True)]
    # By prompt, and each rank a contiguous share: a prompt's answers stay together.
    samples = sorted(samples, key=lambda s: s.prompt_id)
    per_rank = len(samples) // world
    mine = samples[rank * per_rank:(rank + 1) * per_rank]
    if not mine:
        return {"samples": 0.0}
    batch = collate(mine, pad_id).to(device)
    use_generator = torch.tensor(old_logprob_rows(mine, tr.old_logprobs, top_p, iteration))
    stale = torch.tensor([s.policy_version < iteration for s in mine])
    experience = make_experience(actor, ref, batch, use_generator, stale, tr, temperature, world)
    groups = prompt_groups(mine)
    seeded = seed * 1_000_003 + iteration * 1009 + rank
    shuffle = torch.Generator().manual_seed(seeded)
    critic_shuffle = torch.Generator().manual_seed(seeded + 1)
    critic_tr = critic_batching(tr)
    values = None
    if critic is not None:
        critic_plan = mini_batches(groups, critic_tr, world, critic_shuffle)
        values, first_tally = first_critic_step(critic, experience, kl_rewards(experience, tr),
                                                critic_plan, tr)
    elif method.needs_critic:  # a shared critic: the actor's value head
        values = values_before_update(actor, batch, torch.arange(len(mine)), tr)
    set_advantages(experience, method, tr, values)
    loss = PolicyLoss.from_config(tr, method)
    if method.always_whiten or (tr.whiten_advantages and not method.group_baseline):
        whiten_advantages(experience, world)

    def actor_step(rows: torch.Tensor, weight: float) -> dict[str, torch.Tensor]:
        return _actor_micro_step(actor, experience.select(rows), weight, loss, tr,
                                 temperature)

    def critic_step(rows: torch.Tensor, weight: float) -> dict[str, torch.Tensor]:
        return _critic_micro_step(critic, experience.select(rows), weight, tr)

    epochs: list[dict[str, float]] = []
    gap = None  # trainer vs vLLM log-probs, before the policy moves
    for epoch in range(tr.ppo_epochs):
        tally, first_gap = _epoch(actor, mini_batches(groups, tr, world, shuffle), actor_step)
        gap = first_gap if gap is None else gap
        means = tally.means()
        if critic is not None:
            if epoch == 0:  # its first mini batch ran with the values
                plan, started = critic_plan[1:], first_tally
            else:
                plan, started = mini_batches(groups, critic_tr, world, critic_shuffle), None
            critic_tally, _ = _epoch(critic, plan, critic_step, started)
            means.update(critic_tally.means())
        epochs.append(all_mean(means, world, device))
        if tr.target_kl is not None and epochs[-1]["policy_kl"] > tr.target_kl:
            break
    mask = batch.mask
    local = {
        "kl": float(masked_mean(kl_estimate(experience.old_logp, experience.ref_logp,
                                            tr.kl_estimator), mask)),
        "logprob_gap": gap if gap is not None else float("nan"),  # no actor step ran
        "generator_old_logprobs": float(use_generator.float().mean()),
        "is_weight_mean": float(masked_mean(experience.is_weights, mask)),
        "reward_mean": float(batch.rewards.mean()),
        "samples": float(len(mine)),
    }
    metrics: dict[str, Any] = all_mean(local, world, device)
    metrics["samples"] *= world
    for key in epochs[0]:
        metrics[key] = sum(e[key] for e in epochs) / len(epochs)
    metrics["policy_kl"] = epochs[-1]["policy_kl"]
    metrics["epochs"] = len(epochs)
    metrics["epoch_policy_kl"] = [e["policy_kl"] for e in epochs]
    metrics["epoch_clip_fraction"] = [e["clip_fraction"] for e in epochs]
    return metrics
