"""What one PPO update learns from (an `Experience`, OpenRLHF's name): this rank's samples
with the old and reference log-probs, the truncated importance weights of stale answers,
and the advantages by the run's estimator (`rlaif_ray.train.advantages`), whitened over
every rank. All of it is computed before the first optimizer step, without gradients."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlaif_ray.train.advantages import Estimator
from rlaif_ray.train.batch import Batch
from rlaif_ray.train.kl import kl_estimate
from rlaif_ray.train.ppo import shaped_rewards, token_logprobs
from rlaif_ray.train.samples import TrainingSample
from rlaif_ray.train.settings import TrainerConfig
from rlaif_ray.train.shared_prefix import answer_outputs


@dataclass
class Experience:
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

    def select(self, rows: torch.Tensor) -> Experience:
        """The experience of `rows`, cut to their longest sequence."""
        batch = self.batch.select(rows)
        width = batch.mask.shape[1]

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows, :width]

        return Experience(batch, cut(self.old_logp), cut(self.ref_logp), cut(self.advantages),
                          cut(self.is_weights), cut(self.values), cut(self.returns))


def sequence_logprobs(model, batch: Batch, temperature: float,
                      share: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of the answer tokens, their logits / temperature) under a causal LM, both
    `[B, R]`-aligned. Only the answer positions' logits are computed; with `share`, each
    distinct prompt runs once (`rlaif_ray.train.shared_prefix`)."""
    (logits,) = answer_outputs(model, batch, ("logits",), share)
    return answer_logprobs(logits, batch, temperature)


def answer_logprobs(logits: torch.Tensor, batch: Batch,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of `batch`'s answer tokens, the logits / temperature) from answer-aligned
    `logits`."""
    logits = logits.float() / max(temperature, 1e-6)
    return token_logprobs(logits, batch.answer_tokens), logits


def answer_values(critic, batch: Batch, share: bool = True) -> torch.Tensor:
    """The critic's value before each answer token, `[B, R]`."""
    return answer_outputs(critic, batch, ("values",), share)[0]


def pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    """`t` right-padded with zeros to `width` columns."""
    return torch.nn.functional.pad(t, (0, width - t.shape[1]))


def old_logprob_rows(samples: list[TrainingSample], mode: str, top_p: float,
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
    return [top_p >= 1.0 and s.policy_version == version for s in samples]


@torch.no_grad()
def make_experience(actor, ref, batch: Batch, use_generator: torch.Tensor,
                    stale: torch.Tensor, tr: TrainerConfig, temperature: float,
                    world: int = 1) -> Experience:
    """Old and reference log-probs and the importance weights, `trainer.forward_batch_size`
    rows per forward pass (null: micro_batch_size); the advantages follow
    (`set_advantages`). Rows where `use_generator` take the generator's log-probs as old
    log-probs without a forward pass; the others are recomputed, and the `stale` ones
    (answers of an older policy) among them get truncated importance weights
    min(pi_old / pi_generator, trainer.behaviour_is_cap) per token."""
    size, width = batch.mask.shape
    share = tr.share_prompt_prefix
    old_logp = batch.gen_logprobs.clone()
    ref_logp = torch.zeros_like(old_logp)
    pieces = forward_pieces(torch.arange(size), tr)
    actor_passes = _actor_passes(pieces, use_generator, tr, world, batch.mask.device)
    for rows, actor_runs in zip(pieces, actor_passes, strict=True):
        ref_logp[rows] = pad_to(sequence_logprobs(ref, batch.select(rows), temperature,
                                                  share)[0], width)
        if not actor_runs:
            continue
        recompute = rows[~use_generator[rows]]
        # A rank with nothing to recompute here still runs the pass (on one row, dropped):
        # its ZeRO-3 peers gather the weights with it.
        logp, _ = sequence_logprobs(actor, batch.select(recompute if len(recompute)
                                                        else rows[:1]), temperature, share)
        if len(recompute):
            old_logp[recompute] = pad_to(logp, width)
    is_weights = torch.ones_like(old_logp)
    stale = stale & ~use_generator
    if tr.behaviour_is_cap is not None and stale.any():
        ratio = torch.exp(old_logp[stale] - batch.gen_logprobs[stale])
        is_weights[stale] = ratio.clamp(max=tr.behaviour_is_cap)
    return Experience(batch, old_logp, ref_logp, torch.zeros_like(old_logp),
                      is_weights * batch.mask)


def forward_pieces(rows: torch.Tensor, tr: TrainerConfig) -> list[torch.Tensor]:
    """`rows` cut into the pieces of one gradient-free forward pass each."""
    step = tr.forward_batch_size or tr.micro_batch_size
    return list(rows.split(step))


def lockstep(tr: TrainerConfig, world: int) -> bool:
    """Whether every rank must run the same forward passes: ZeRO-3 shards the weights over
    the ranks and each pass gathers them collectively."""
    return tr.zero_stage == 3 and world > 1


def _actor_passes(pieces: list[torch.Tensor], use_generator: torch.Tensor,
                  tr: TrainerConfig, world: int, device: torch.device) -> list[bool]:
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
                         tr: TrainerConfig) -> torch.Tensor:
    """`model`'s values of `rows` (`[len(rows), R]`), in passes without gradients."""
    width = batch.mask.shape[1]
    return torch.cat([pad_to(answer_values(model, batch.select(piece),
                                           tr.share_prompt_prefix), width)
                      for piece in forward_pieces(rows, tr)])


def kl_rewards(experience: Experience, tr: TrainerConfig) -> torch.Tensor:
    """Per-token rewards with the KL penalty to the reference in them (gae,
    reinforce_pp)."""
    kl = kl_estimate(experience.old_logp, experience.ref_logp, tr.kl_estimator)
    return shaped_rewards(kl, experience.batch.rewards, experience.batch.mask, tr.kl_coef)


def set_advantages(experience: Experience, method: Estimator, tr: TrainerConfig,
                   values: torch.Tensor | None = None) -> None:
    """`experience`'s advantages by `method` (see `rlaif_ray.train.advantages`); for gae
    from the critic's `values` before the update, which with the returns join it."""
    batch = experience.batch
    mask = batch.mask
    if method.group_baseline:
        experience.advantages = batch.advantages.unsqueeze(-1) * mask
        return
    rewards = kl_rewards(experience, tr)
    if method.tokens is None:
        raise ValueError(f"estimator {method.name!r} gives no per-token advantages")
    if method.needs_critic:
        values = values * mask
        experience.values = values
    experience.advantages, experience.returns = method.tokens(rewards, values, mask,
                                                              tr.gamma, tr.lam)


def whiten_advantages(experience: Experience, world: int) -> None:
    """Whiten advantages with the mean/std over every rank's response tokens."""
    import torch.distributed as dist

    mask = experience.batch.mask
    stats = torch.stack([mask.sum(), (experience.advantages * mask).sum(),
                         (experience.advantages ** 2 * mask).sum()]).double()
    if world > 1:
        dist.all_reduce(stats)
    count = stats[0].clamp(min=1)
    mean = stats[1] / count
    std = (stats[2] / count - mean ** 2).clamp(min=1e-8).sqrt()
    experience.advantages = ((experience.advantages - mean.float()) / std.float()) * mask
