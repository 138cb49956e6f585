"""The order of one PPO epoch: this rank's rows cut into mini batches (one optimizer step
each) and micro batches (one forward/backward each), for the actor and, with its own
sizes, the critic."""

from __future__ import annotations

from dataclasses import replace

import torch

from rlaif_ray.train.samples import TrainingSample
from rlaif_ray.train.settings import TrainerConfig


def mini_batch_size(tr: TrainerConfig, world: int) -> int:
    """Samples per optimizer step over all `world` ranks: `trainer.mini_batch_size`, or
    one micro batch per rank (null)."""
    return tr.mini_batch_size or tr.micro_batch_size * world


def critic_batching(tr: TrainerConfig) -> TrainerConfig:
    """`tr` with the critic's mini and micro batch sizes in place of the actor's
    (`trainer.critic_mini_batch_size`, `trainer.critic_micro_batch_size`; null: the
    actor's)."""
    return replace(tr, mini_batch_size=tr.critic_mini_batch_size or tr.mini_batch_size,
                   micro_batch_size=tr.critic_micro_batch_size or tr.micro_batch_size)


def mini_batches(groups: torch.Tensor, tr: TrainerConfig, world: int,
                 generator: torch.Generator) -> list[list[torch.Tensor]]:
    """One epoch's order of this rank's rows, row i answering prompt group `groups[i]`:
    with `trainer.shuffle`, the groups in shuffled order, each group's rows shuffled and
    kept together (so a micro batch runs few distinct prompts: `shared_prefix`); without,
    the rows as they are (the same every epoch). Cut into mini batches of
    `trainer.mini_batch_size / world` rows (the last may be short), each cut into micro
    batches of at most `trainer.micro_batch_size` rows."""
    per_rank = mini_batch_size(tr, world) // world
    order = shuffled_by_group(groups, generator) if tr.shuffle else torch.arange(len(groups))
    micro = tr.micro_batch_size
    return [[mini[i:i + micro] for i in range(0, len(mini), micro)]
            for mini in order.split(per_rank)]


def shuffled_by_group(groups: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rows in a random order that keeps each group's rows together: the groups shuffled,
    and the rows within each group."""
    rows = torch.randperm(len(groups), generator=generator)
    place = torch.argsort(torch.randperm(int(groups.max()) + 1, generator=generator))
    return rows[torch.argsort(place[groups[rows]], stable=True)]


def prompt_groups(samples: list[TrainingSample]) -> torch.Tensor:
    """Each sample's prompt group: 0, 1, ... in order of first appearance."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(s.prompt_id, len(ids)) for s in samples])
