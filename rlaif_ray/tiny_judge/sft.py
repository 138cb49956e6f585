"""Supervised fine-tuning of `tiny-judge` on synthetic rubric examples, and its agreement
with the properties on held-out answers (teacher-forced, the vote's value tokens read
the way a schema-constrained decoder would choose among them)."""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.tiny_judge import properties
from rlaif_ray.tiny_judge.examples import (
    AnswerMaker,
    Example,
    Leaning,
    builtin_prompts,
    make_example,
    vote_pieces,
)

FEATURE_SCALE = 0.1  # embedding value of a token feature (random entries: std 0.02)
VALUE_WEIGHT = 0.8  # share of the loss on the vote's values (the rest: its JSON frame)


@dataclass(frozen=True)
class Recipe:
    """How a judge is trained: from scratch, or fine-tuned from `base` with a `leaning`."""

    steps: int = 1000
    batch_size: int = 24
    lr: float = 2e-3
    warmup: int = 60
    held_out: int = 400
    base: str | None = None
    leaning: Leaning = Leaning()


@dataclass
class _Group:
    """Examples of one mode as a batch: their shared judge-prompt prefix (run once) and
    their right-padded suffixes with per-token loss weights."""

    examples: list[Example]
    prefix: Any  # (1, P) token ids
    suffix: Any  # (B, S) token ids
    mask: Any  # (B, P + S)
    weights: Any  # (B, S): loss weight of predicting each suffix token
    values: list[list[int]]  # per example: suffix positions of the vote's value tokens


class _Encoder:
    """Examples -> token batches. The judge prompt's text before the user's prompt is the
    same for every example of a mode: it is encoded (and run) once per batch."""

    SENTINEL = "\x00prompt\x00"

    def __init__(self, tokenizer: Any, rubrics: dict[str, Rubric]) -> None:
        self.tok = tokenizer
        self._piece_ids: dict[str, list[int]] = {}
        self.prefix = {mode: self._ids(self._chat(rubric.render(self.SENTINEL))
                                       .split(self.SENTINEL)[0])
                       for mode, rubric in rubrics.items()}

    def _chat(self, message: str) -> str:
        return self.tok.apply_chat_template([{"role": "user", "content": message}],
                                            add_generation_prompt=True, tokenize=False)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def piece(self, text: str) -> list[int]:
        if text not in self._piece_ids:
            self._piece_ids[text] = self._ids(text)
        return self._piece_ids[text]

    def encode(self, ex: Example) -> tuple[list[int], int, list[int]]:
        """(suffix ids, target start, value positions) of one example, after its prefix."""
        prefix = self.prefix[ex.mode]
        ids = self._ids(self._chat(ex.message))
        if ids[:len(prefix)] != prefix:
            raise ValueError(f"judge prompt prefix tokenises differently for {ex.prompt!r}")
        ids = ids[len(prefix):]
        start, values = len(ids), []
        for text, is_value in vote_pieces(ex.vote):
            if is_value:
                values.append(len(ids))
            ids = ids + self.piece(text)
        return ids + [self.tok.eos_token_id], start, values

    def groups(self, examples: list[Example]) -> list[_Group]:
        import torch

        out = []
        for mode, prefix in self.prefix.items():
            chunk = [ex for ex in examples if ex.mode == mode]
            if not chunk:
                continue
            encoded = [self.encode(ex) for ex in chunk]
            width = max(len(ids) for ids, _, _ in encoded)
            suffix = torch.full((len(chunk), width), self.tok.pad_token_id)
            mask = torch.zeros((len(chunk), len(prefix) + width), dtype=torch.long)
            mask[:, :len(prefix)] = 1
            weights = torch.zeros((len(chunk), width))
            for row, (ids, start, values) in enumerate(encoded):
                suffix[row, :len(ids)] = torch.tensor(ids)
                mask[row, len(prefix):len(prefix) + len(ids)] = 1
                frame = [p for p in range(start, len(ids)) if p not in values]
                weights[row, frame] = (1 - VALUE_WEIGHT) / len(frame)
                weights[row, values] = VALUE_WEIGHT / len(values)
            out.append(_Group(chunk, torch.tensor([prefix]), suffix, mask, weights,
                              [values for _, _, values in encoded]))
        return out


def _token_logits(model, group: _Group, positions):
    """Logits predicting the suffix tokens at (row, position) pairs. The prefix runs once
    and its keys/values are shared by the rows; the LM head runs only where asked."""
    cache = model.model(input_ids=group.prefix, use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(group.examples))
    hidden = model.model(input_ids=group.suffix, attention_mask=group.mask,
                         past_key_values=cache, use_cache=False).last_hidden_state
    rows, cols = positions
    return model.lm_head(hidden[rows, cols - 1])


def _maker(tokenizer: Any) -> AnswerMaker:
    specials = set(tokenizer.all_special_ids)
    pieces = [tokenizer.decode([i]) for i in range(len(tokenizer)) if i not in specials]
    words = sorted({w for line in builtin_prompts() for w in re.findall(r"[A-Za-z]+", line)})
    return AnswerMaker([p for p in pieces if p.strip()], words)


def seed_token_features(model, tokenizer: Any) -> None:
    """Write each token's character facts (`properties.TOKEN_FEATURES`) into the last
    embedding dimensions: the judge starts knowing what its tokens are made of and learns
    where to look."""
    import torch

    features = properties.TOKEN_FEATURES
    table = torch.tensor([[float(f(tokenizer.decode([i]))) for f in features]
                          for i in range(model.get_input_embeddings().weight.shape[0])])
    with torch.no_grad():
        model.get_input_embeddings().weight[:, -len(features):] = FEATURE_SCALE * table


def _examples(rng: random.Random, n: int, prompts, maker, rubrics, leaning) -> list[Example]:
    return [make_example(rng, prompts, maker, rubrics, leaning) for _ in range(n)]


def train_judge(model_dir: Path, recipe: Recipe, rubrics: dict[str, Rubric], seed: int,
                log=print) -> dict[str, Any]:
    """Fine-tune the model in `model_dir` in place; returns its build report (agreement
    per dimension on held-out answers of a faithful judge, seconds, steps)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if recipe.base is None:
        seed_token_features(model, tok)
    encoder, maker, prompts = _Encoder(tok, rubrics), _maker(tok), builtin_prompts()
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / recipe.warmup)
                                              * max(0.05, 1 - s / recipe.steps))
    start = time.perf_counter()
    model.train()
    for step in range(recipe.steps):
        batch = _examples(rng, recipe.batch_size, prompts, maker, rubrics, recipe.leaning)
        opt.zero_grad()
        loss = 0.0
        for group in encoder.groups(batch):
            positions = group.weights.nonzero(as_tuple=True)
            logits = _token_logits(model, group, positions)
            nll = torch.nn.functional.cross_entropy(logits, group.suffix[positions],
                                                    reduction="none")
            group_loss = (nll * group.weights[positions]).sum() / len(batch)
            group_loss.backward()
            loss += group_loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == recipe.steps - 1:
            log(f"  step {step + 1}/{recipe.steps}  loss {loss:.4f}  "
                f"{time.perf_counter() - start:.0f}s")
    seconds = time.perf_counter() - start
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)
    held_out = _examples(random.Random(seed + 7919), recipe.held_out, prompts, maker, rubrics,
                         Leaning())
    return {"train_seconds": round(seconds, 1), "steps": recipe.steps,
            "batch_size": recipe.batch_size, "held_out_examples": recipe.held_out,
            "agreement": agreement(model, encoder, held_out)}


def _read_votes(model, encoder: _Encoder, examples: list[Example]) -> list[dict]:
    """Each example's vote as the model gives it, its values chosen among the valid ones."""
    import torch

    choices = {"pointwise": [str(s) for s in range(1, 10)], "pairwise": ["A", "B", "tie"]}
    votes: dict[int, dict] = {}
    with torch.no_grad():
        for i in range(0, len(examples), 32):
            for group in encoder.groups(examples[i:i + 32]):
                names = choices[group.examples[0].mode]
                ids = torch.tensor([encoder.piece(n)[0] for n in names])
                rows = torch.tensor([r for r, v in enumerate(group.values) for _ in v])
                cols = torch.tensor([c for v in group.values for c in v])
                picks = iter(_token_logits(model, group, (rows, cols))[:, ids]
                             .argmax(dim=-1).tolist())
                for ex in group.examples:
                    votes[id(ex)] = {key: names[next(picks)] for key in ex.vote}
    return [votes[id(ex)] for ex in examples]


def agreement(model, encoder: _Encoder, examples: list[Example]) -> dict[str, dict[str, float]]:
    """Share of held-out examples where the model's vote agrees with the faithful one, per
    mode and key (pointwise: the score's side of the midpoint)."""
    hits: dict[str, dict[str, list[bool]]] = {"pointwise": {}, "pairwise": {}}
    for ex, vote in zip(examples, _read_votes(model, encoder, examples), strict=True):
        for key, want in ex.vote.items():
            if ex.mode == "pointwise":
                ok = (int(vote[key]) > properties.MIDPOINT) == (want > properties.MIDPOINT)
            else:
                ok = vote[key] == want
            hits[ex.mode].setdefault(key, []).append(ok)
    return {mode: {k: round(sum(v) / len(v), 4) for k, v in keys.items()}
            for mode, keys in hits.items()}
