"""Answers of one prompt share its forward pass: each distinct prompt of a batch runs once,
its keys and values are gathered to the rows that answer it, and only the answer tokens run
per row. The outputs and gradients equal a full pass over every row's prompt + answer (the
keys and values are part of the autograd graph); for a group of 8 answers of 8 tokens to a
20-token prompt it runs 2.7x fewer tokens (`trainer.share_prompt_prefix`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlaif_ray.train.batch import Batch


@dataclass
class PromptSplit:
    """A batch as its distinct prompts (left-padded, `[U, P]`) and each row's answer
    (`[B, R]`); row b answers prompt `owner[b]`."""

    prompts: torch.Tensor
    prompt_mask: torch.Tensor
    prompt_positions: torch.Tensor
    owner: torch.Tensor
    answers: torch.Tensor
    attention_mask: torch.Tensor  # [B, P + R]: the owner prompt's mask, then the answer's
    answer_positions: torch.Tensor


def split_prompts(batch: Batch) -> PromptSplit:
    """The batch's distinct prompts and the answers to them. A batch whose prompts are all
    distinct splits too (it saves nothing, and costs a second call): the passes a model
    runs must not depend on the data, since ZeRO-3 ranks gather the weights together in
    every pass."""
    width = batch.prompt_width
    columns = torch.cat([batch.input_ids[:, :width], batch.attention_mask[:, :width]], dim=1)
    distinct, owner = torch.unique(columns, dim=0, return_inverse=True)
    # One row per distinct prompt (any of its rows: they are equal).
    first = torch.zeros(len(distinct), dtype=torch.long).scatter_(
        0, owner, torch.arange(len(owner)))
    return PromptSplit(batch.input_ids[first, :width], batch.attention_mask[first, :width],
                       batch.position_ids[first, :width], owner, batch.input_ids[:, width:],
                       batch.attention_mask, batch.position_ids[:, width:])


def answer_outputs(model, batch: Batch, outputs: tuple[str, ...],
                   share: bool) -> tuple[torch.Tensor, ...]:
    """`model`'s `outputs` ("logits" of a causal LM, "values" of a critic, or both of a
    PolicyValueModel) at the positions that predict each answer token, each `[B, R, ...]`
    and answer-aligned, from one pass. With `share`, each distinct prompt runs once
    (`split_prompts`); else every row runs whole. Only the answer positions are computed
    past the trunk (`logits_to_keep`)."""
    answer = batch.mask.shape[1]
    if not share:
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     position_ids=batch.position_ids, logits_to_keep=answer + 1)
        return tuple(getattr(full, name)[:, -answer - 1:-1] for name in outputs)
    split = split_prompts(batch)
    first = model(input_ids=split.prompts, attention_mask=split.prompt_mask,
                  position_ids=split.prompt_positions, use_cache=True, logits_to_keep=1)
    cache = first.past_key_values
    cache.reorder_cache(split.owner)
    rest = model(input_ids=split.answers, attention_mask=split.attention_mask,
                 position_ids=split.answer_positions, past_key_values=cache, use_cache=False,
                 logits_to_keep=answer)
    return tuple(torch.cat([getattr(first, name)[:, -1:][split.owner],
                            getattr(rest, name)[:, :answer - 1]], dim=1) for name in outputs)
