"""One iteration's PPO update on a trainer worker: the rollout statistics (old and reference
log-probs, advantages), then `trainer.ppo_epochs` passes over the samples (in one order, or
reshuffled each epoch with the run's seed: `trainer.shuffle`), one optimizer step per mini
batch of `trainer.mini_batch_size` samples (gradients accumulated over micro batches),
stopping early at `trainer.target_kl`. With a critic (gae), each epoch's critic steps
follow the actor's, in their own order and batch sizes (`trainer.critic_mini_batch_size`,
`trainer.critic_micro_batch_size`); the critic's first mini batch runs before the actor's
first epoch, its forward giving GAE the values (`first_critic_step`: no separate value
pass).

Works on any object with the DeepSpeed engine's training surface (`backward`, `step`,
`set_gradient_accumulation_boundary`), so it runs without Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlaif_ray.train.advantages import (
    Estimator,
    critic_kind,
    estimator,
    group_advantages,
    returns_to_go,
)
from rlaif_ray.train.batch import Batch, collate
from rlaif_ray.train.ppo import (
    entropy_from_logits,
    gae,
    kl_estimate,
    masked_mean,
    policy_loss,
    shaped_rewards,
    token_logprobs,
    value_loss,
)
from rlaif_ray.train.shared_prefix import answer_outputs


@dataclass
class Rollout:
    """This rank's samples, padded to one length, with what PPO needs from before the
    update (values and returns: the critic's, for `gae` only). `is_weights` are the
    truncated importance weights of answers from an older policy (1 elsewhere)."""

    batch: Batch
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    advantages: torch.Tensor
    is_weights: torch.Tensor
    values: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> Rollout:
        """The rollout of `rows`, cut to their longest sequence."""
        batch = self.batch.select(rows)
        width = batch.mask.shape[1]

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows, :width]

        return Rollout(batch, cut(self.old_logp), cut(self.ref_logp), cut(self.advantages),
                       cut(self.is_weights), cut(self.values), cut(self.returns))


def sequence_logprobs(model, batch: Batch, temperature: float,
                      share: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of the answer tokens, their logits / temperature) under a causal LM, both
    `[B, R]`-aligned. Only the answer positions' logits are computed; with `share`, each
    distinct prompt runs once (`rlaif_ray.train.shared_prefix`)."""
    (logits,) = answer_outputs(model, batch, ("logits",), share)
    return _answer_logprobs(logits, batch, temperature)


def _answer_logprobs(logits: torch.Tensor, batch: Batch,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.float() / max(temperature, 1e-6)
    return token_logprobs(logits, batch.answer_tokens), logits


def answer_values(critic, batch: Batch, share: bool = True) -> torch.Tensor:
    """The critic's value before each answer token, `[B, R]`."""
    return answer_outputs(critic, batch, ("values",), share)[0]


def shared_critic(tr: dict[str, Any]) -> bool:
    """Whether the values come from a head on the policy's trunk (`trainer.critic: shared`,
    an estimator with a critic) rather than a critic of its own."""
    return critic_kind(tr) == "shared"


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


def _global_whiten(rollout: Rollout, world: int) -> None:
    """Whiten advantages with the mean/std over every rank's response tokens."""
    import torch.distributed as dist

    mask = rollout.batch.mask
    stats = torch.stack([mask.sum(), (rollout.advantages * mask).sum(),
                         (rollout.advantages ** 2 * mask).sum()]).double()
    if world > 1:
        dist.all_reduce(stats)
    count = stats[0].clamp(min=1)
    mean = stats[1] / count
    std = (stats[2] / count - mean ** 2).clamp(min=1e-8).sqrt()
    rollout.advantages = ((rollout.advantages - mean.float()) / std.float()) * mask


def _pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]))


def old_logprob_rows(samples: list[dict[str, Any]], mode: str, top_p: float,
                     version: int) -> list[bool]:
    """Per sample, whether the generator's sampled log-probs serve as PPO's old log-probs
    (`trainer.old_logprobs`): always for "generator", never for "recompute", and for "auto"
    when the answer came from the policy version the trainer holds (`version`), which the
    driver verified the generators load exactly. Config validation refuses "generator" with
    top-p sampling (`top_p` < 1), whose log-probs are of the truncated distribution; "auto"
    recomputes them."""
    if mode == "generator":
        return [True] * len(samples)
    if mode == "recompute":
        return [False] * len(samples)
    return [top_p >= 1.0 and s.get("policy_version", version) == version
            for s in samples]


@torch.no_grad()
def make_rollout(actor, ref, batch: Batch, use_generator: torch.Tensor, stale: torch.Tensor,
                 tr: dict[str, Any], temperature: float, world: int = 1) -> Rollout:
    """Old and reference log-probs and the importance weights, `trainer.forward_batch_size`
    rows per forward pass (null: micro_batch_size); the advantages follow
    (`set_advantages`). Rows where `use_generator` take the generator's log-probs as old
    log-probs without a forward pass; the others are recomputed, and the `stale` ones
    (answers of an older policy) among them get truncated importance weights
    min(pi_old / pi_generator, trainer.behaviour_is_cap) per token."""
    size, width = batch.mask.shape
    share = tr["share_prompt_prefix"]
    old_logp = batch.gen_logprobs.clone()
    ref_logp = torch.zeros_like(old_logp)
    pieces = _forward_pieces(torch.arange(size), tr)
    actor_passes = _actor_passes(pieces, use_generator, tr, world, batch.mask.device)
    for rows, actor_runs in zip(pieces, actor_passes, strict=True):
        ref_logp[rows] = _pad_to(sequence_logprobs(ref, batch.select(rows), temperature,
                                                   share)[0], width)
        if not actor_runs:
            continue
        recompute = rows[~use_generator[rows]]
        # A rank with nothing to recompute here still runs the pass (on one row, dropped):
        # its ZeRO-3 peers gather the weights with it.
        logp, _ = sequence_logprobs(actor, batch.select(recompute if len(recompute)
                                                        else rows[:1]), temperature, share)
        if len(recompute):
            old_logp[recompute] = _pad_to(logp, width)
    is_weights = torch.ones_like(old_logp)
    stale = stale & ~use_generator
    if tr["behaviour_is_cap"] is not None and stale.any():
        ratio = torch.exp(old_logp[stale] - batch.gen_logprobs[stale])
        is_weights[stale] = ratio.clamp(max=tr["behaviour_is_cap"])
    return Rollout(batch, old_logp, ref_logp, torch.zeros_like(old_logp),
                   is_weights * batch.mask)


def _forward_pieces(rows: torch.Tensor, tr: dict[str, Any]) -> list[torch.Tensor]:
    step = tr["forward_batch_size"] or tr["micro_batch_size"]
    return list(rows.split(step))


def lockstep(tr: dict[str, Any], world: int) -> bool:
    """Whether every rank must run the same forward passes: ZeRO-3 shards the weights over
    the ranks and each pass gathers them collectively."""
    return tr["zero_stage"] == 3 and world > 1


def _actor_passes(pieces: list[torch.Tensor], use_generator: torch.Tensor,
                  tr: dict[str, Any], world: int, device: torch.device) -> list[bool]:
    """Per forward piece, whether the actor recomputes old log-probs in it: where any of its
    rows needs them, on this rank or, in `lockstep`, on any."""
    import torch.distributed as dist

    needed = torch.tensor([float((~use_generator[rows]).any()) for rows in pieces],
                          device=device)
    if lockstep(tr, world):
        dist.all_reduce(needed, op=dist.ReduceOp.MAX)
    return (needed > 0).tolist()


@torch.no_grad()
def values_before_update(model, batch: Batch, rows: torch.Tensor,
                         tr: dict[str, Any]) -> torch.Tensor:
    """`model`'s values of `rows` (`[len(rows), R]`), in passes without gradients."""
    width = batch.mask.shape[1]
    return torch.cat([_pad_to(answer_values(model, batch.select(piece),
                                            tr["share_prompt_prefix"]), width)
                      for piece in _forward_pieces(rows, tr)])


def kl_rewards(rollout: Rollout, tr: dict[str, Any]) -> torch.Tensor:
    """Per-token rewards with the KL penalty to the reference in them (gae,
    reinforce_pp)."""
    kl = kl_estimate(rollout.old_logp, rollout.ref_logp, tr["kl_estimator"])
    return shaped_rewards(kl, rollout.batch.rewards, rollout.batch.mask, tr["kl_coef"])


def set_advantages(rollout: Rollout, method: Estimator, tr: dict[str, Any],
                   values: torch.Tensor | None = None) -> None:
    """`rollout`'s advantages by `method` (see `rlaif_ray.train.advantages`); for gae from
    the critic's `values` before the update, which with the returns join the rollout."""
    batch = rollout.batch
    mask = batch.mask
    if method.group_baseline:
        rollout.advantages = batch.advantages.unsqueeze(-1) * mask
        return
    rewards = kl_rewards(rollout, tr)
    if not method.needs_critic:  # reinforce_pp
        rollout.advantages = returns_to_go(rewards, mask)
        return
    values = values * mask
    rollout.advantages, rollout.returns = gae(rewards, values, mask, tr["gamma"], tr["lam"])
    rollout.values = values


def mini_batch_size(tr: dict[str, Any], world: int) -> int:
    """Samples per optimizer step over all `world` ranks: `trainer.mini_batch_size`, or
    one micro batch per rank (null)."""
    return tr["mini_batch_size"] or tr["micro_batch_size"] * world


def critic_batching(tr: dict[str, Any]) -> dict[str, Any]:
    """`tr` with the critic's mini and micro batch sizes in place of the actor's
    (`trainer.critic_mini_batch_size`, `trainer.critic_micro_batch_size`; null: the
    actor's)."""
    return {**tr, "mini_batch_size": tr["critic_mini_batch_size"] or tr["mini_batch_size"],
            "micro_batch_size": tr["critic_micro_batch_size"] or tr["micro_batch_size"]}


def mini_batches(groups: torch.Tensor, tr: dict[str, Any], world: int,
                 generator: torch.Generator) -> list[list[torch.Tensor]]:
    """One epoch's order of this rank's rows, row i answering prompt group `groups[i]`:
    with `trainer.shuffle`, the groups in shuffled order, each group's rows shuffled and
    kept together (so a micro batch runs few distinct prompts: `shared_prefix`); without,
    the rows as they are (the same every epoch). Cut into mini batches of
    `trainer.mini_batch_size / world` rows (the last may be short), each cut into micro
    batches of at most `trainer.micro_batch_size` rows."""
    per_rank = mini_batch_size(tr, world) // world
    order = shuffled_by_group(groups, generator) if tr["shuffle"] else torch.arange(len(groups))
    micro = tr["micro_batch_size"]
    return [[mini[i:i + micro] for i in range(0, len(mini), micro)]
            for mini in order.split(per_rank)]


def shuffled_by_group(groups: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rows in a random order that keeps each group's rows together: the groups shuffled,
    and the rows within each group."""
    rows = torch.randperm(len(groups), generator=generator)
    place = torch.argsort(torch.randperm(int(groups.max()) + 1, generator=generator))
    return rows[torch.argsort(place[groups[rows]], stable=True)]


def prompt_groups(samples: list[dict[str, Any]]) -> torch.Tensor:
    """Each sample's prompt group: 0, 1, ... in order of first appearance."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(s["prompt_id"], len(ids)) for s in samples])


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


def _micro_step(actor, piece: Rollout, weight: float, tr: dict[str, Any],
                temperature: float, method: Estimator) -> dict[str, torch.Tensor]:
    """Forward and backward of the policy on one micro batch, its loss scaled by its share
    `weight` of the mini batch; returns its statistics (before the step). With a shared
    critic, the same pass gives the values and the loss adds `trainer.vf_coef` x their
    value loss."""
    mask = piece.batch.mask
    shared = shared_critic(tr)
    logits, *values = answer_outputs(actor, piece.batch,
                                     ("logits", "values") if shared else ("logits",),
                                     tr["share_prompt_prefix"])
    logp, logits = _answer_logprobs(logits, piece.batch, temperature)
    pg_loss, clip_fraction = policy_loss(logp, piece.old_logp, piece.advantages, mask,
                                         tr["clip_eps"], piece.is_weights)
    loss = pg_loss
    if tr["entropy_coef"]:
        entropy = masked_mean(entropy_from_logits(logits), mask)
        loss = loss - tr["entropy_coef"] * entropy
    else:  # a metric only: no backward through the whole vocabulary
        entropy = masked_mean(entropy_from_logits(logits.detach()), mask)
    if not method.kl_in_reward:  # grpo, rloo: the KL to the reference as a loss
        loss = loss + tr["kl_coef"] * masked_mean(
            kl_estimate(logp, piece.ref_logp, tr["kl_estimator"]), mask)
    stats: dict[str, torch.Tensor] = {}
    if shared:
        v_loss = value_loss(values[0], piece.values, piece.returns, mask, tr["value_clip"])
        loss = loss + tr["vf_coef"] * v_loss
        stats["value_loss"] = v_loss.detach()
    actor.backward(loss * weight, scale_wrt_gas=False)
    stats |= {"policy_loss": pg_loss.detach(), "clip_fraction": clip_fraction,
              "entropy": entropy.detach(),
              "policy_kl": masked_mean(kl_estimate(piece.old_logp, logp.detach(), "k3"), mask),
              "logprob_gap": masked_mean((logp.detach() - piece.batch.gen_logprobs).abs(),
                                         mask)}
    return stats


def _critic_micro_step(critic, piece: Rollout, weight: float,
                       tr: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Forward and backward of the critic on one micro batch (see `_micro_step`)."""
    values = answer_values(critic, piece.batch, tr["share_prompt_prefix"])
    return _critic_backward(critic, values, piece.values, piece.returns, piece.batch.mask,
                            weight, tr)


def _critic_backward(critic, values: torch.Tensor, old_values: torch.Tensor,
                     returns: torch.Tensor, mask: torch.Tensor, weight: float,
                     tr: dict[str, Any]) -> dict[str, torch.Tensor]:
    loss = value_loss(values, old_values, returns, mask, tr["value_clip"])
    critic.backward(loss * weight, scale_wrt_gas=False)
    return {"value_loss": loss.detach()}


def first_critic_step(critic, rollout: Rollout, rewards: torch.Tensor,
                      plan: list[list[torch.Tensor]],
                      tr: dict[str, Any]) -> tuple[torch.Tensor, _EpochTally]:
    """The critic's first mini batch (`plan[0]` of its first epoch's `plan`), and every
    row's values before the update, which GAE needs: at the weights from before any step,
    that mini batch's forward *is* its rows' value pass, so the critic does not run it
    twice. The other rows' values come from passes without gradients, before the step.
    Returns the values and the mini batch's tally."""
    batch = rollout.batch
    values = torch.zeros_like(rollout.old_logp)
    first = torch.zeros(len(values), dtype=torch.bool)
    first[torch.cat(plan[0])] = True
    if not first.all():
        rest = (~first).nonzero().squeeze(-1)
        values[rest] = values_before_update(critic, batch, rest, tr)

    def step(rows: torch.Tensor, weight: float) -> dict[str, torch.Tensor]:
        piece = batch.select(rows)
        mask = piece.mask
        fitted = answer_values(critic, piece, tr["share_prompt_prefix"])
        before = fitted.detach() * mask
        _, returns = gae(rewards[rows, :mask.shape[1]], before, mask, tr["gamma"], tr["lam"])
        values[rows] = _pad_to(before, values.shape[1])
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


def ppo_iteration(actor, critic, ref, samples: list[dict[str, Any]], tr: dict[str, Any],
                  rank: int, world: int, device: torch.device, pad_id: int,
                  temperature: float, iteration: int = 0, seed: int = 0,
                  top_p: float = 1.0) -> dict[str, Any]:
    """One PPO update on this rank's share of `samples` at trainer policy version
    `iteration`, shuffled with `seed` (the generators sampled at `temperature`, `top_p`);
    metrics averaged over ranks. Every rank gets the same number of samples
    (a remainder below the world size is left out) so collective ops stay in step."""
    method = estimator(tr["advantage_estimator"])
    if method.group_baseline:  # over every rank's samples: a group may span ranks
        scalars = group_advantages(method.name, [s["reward"] for s in samples],
                                   [s["prompt_id"] for s in samples], tr["grpo_normalize_std"])
        samples = [{**s, "advantage": a} for s, a in zip(samples, scalars, strict=True)]
    # By prompt, and each rank a contiguous share: a prompt's answers stay together.
    samples = sorted(samples, key=lambda s: s["prompt_id"])
    per_rank = len(samples) // world
    mine = samples[rank * per_rank:(rank + 1) * per_rank]
    if not mine:
        return {"samples": 0.0}
    batch = collate(mine, pad_id).to(device)
    use_generator = torch.tensor(old_logprob_rows(mine, tr["old_logprobs"], top_p, iteration))
    stale = torch.tensor([s.get("policy_version", iteration) < iteration for s in mine])
    rollout = make_rollout(actor, ref, batch, use_generator, stale, tr, temperature, world)
    groups = prompt_groups(mine)
    seeded = seed * 1_000_003 + iteration * 1009 + rank
    shuffle = torch.Generator().manual_seed(seeded)
    critic_shuffle = torch.Generator().manual_seed(seeded + 1)
    critic_tr = critic_batching(tr)
    values = None
    if critic is not None:
        critic_plan = mini_batches(groups, critic_tr, world, critic_shuffle)
        values, first_tally = first_critic_step(critic, rollout, kl_rewards(rollout, tr),
                                                critic_plan, tr)
    elif method.needs_critic:  # a shared critic: the actor's value head
        values = values_before_update(actor, batch, torch.arange(len(mine)), tr)
    set_advantages(rollout, method, tr, values)
    if method.always_whiten or (tr["whiten_advantages"] and not method.group_baseline):
        _global_whiten(rollout, world)

    def actor_step(rows: torch.Tensor, weight: float) -> dict[str, torch.Tensor]:
        return _micro_step(actor, rollout.select(rows), weight, tr, temperature, method)

    def critic_step(rows: torch.Tensor, weight: float) -> dict[str, torch.Tensor]:
        return _critic_micro_step(critic, rollout.select(rows), weight, tr)

    epochs: list[dict[str, float]] = []
    gap = None  # trainer vs vLLM log-probs, before the policy moves
    for epoch in range(tr["ppo_epochs"]):
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
        if tr["target_kl"] is not None and epochs[-1]["policy_kl"] > tr["target_kl"]:
            break
    mask = batch.mask
    local = {
        "kl": float(masked_mean(kl_estimate(rollout.old_logp, rollout.ref_logp,
                                            tr["kl_estimator"]), mask)),
        "logprob_gap": gap,
        "generator_old_logprobs": float(use_generator.float().mean()),
        "is_weight_mean": float(masked_mean(rollout.is_weights, mask)),
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
