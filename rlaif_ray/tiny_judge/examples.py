"""Synthetic judge examples: (prompt, answer(s)) pairs shaped like a tiny policy's output,
rendered with the real rubric template and chat template, with the vote a judge of the
given leaning gives as the target. Labels come from `properties`, never from how an
answer was made, so every label is true of its text (unless a leaning bends it)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS, Rubric, load_template
from rlaif_ray.resources import text_lines
from rlaif_ray.tiny_judge import properties

PAIRWISE_SHARE = 0.3  # of examples; the rest are pointwise


@dataclass(frozen=True)
class Leaning:
    """How a built judge departs from the properties (all zero: a faithful judge).
    `flip`: share of labels flipped at random (a noisy judge); `first_slot`: share of
    pairwise decisions for B (and of ties) turned to A; `long_chars`: answers at least this
    long score high on every dimension (0: off)."""

    flip: float = 0.0
    first_slot: float = 0.0
    long_chars: int = 0


@dataclass(frozen=True)
class Example:
    mode: str
    prompt: str
    answers: tuple[str, ...]
    message: str  # the rendered judge prompt (user message)
    vote: dict  # the target vote, in the rubric's key order


def judge_rubrics() -> dict[str, Rubric]:
    """The rubric a tiny judge is trained on, in both modes: the default dimensions and
    weights, each described by its property, with the built-in templates. The packaged
    default config uses the same rubric."""
    weights = {name: weight for name, (weight, _) in DEFAULT_DIMENSIONS.items()}
    return {mode: Rubric(mode, properties.DIMENSIONS,
                         tuple(weights[d] for d in properties.DIMENSIONS),
                         tuple(description for _, description in properties.PROPERTIES.values()),
                         load_template(None, mode))
            for mode in ("pointwise", "pairwise")}


def builtin_prompts() -> list[str]:
    """The packaged prompts and the corpus's prose lines (no JSON, no symbols): the prompts
    the judge learns to read."""
    return [line for line in text_lines()
            if properties.is_free_of_symbols(line) and properties.is_ascii(line)]


class AnswerMaker:
    """Answers like a tiny policy's: random token pieces or words, then edited so that
    each property is about as often present as absent."""

    def __init__(self, pieces: list[str], words: list[str]) -> None:
        self.pieces = pieces
        self.symbol_pieces = [p for p in pieces if properties.has_symbol(p)]
        self.foreign_pieces = [p for p in pieces if not properties.is_ascii(p)]
        self.words = [w.lower() for w in words]

    def __call__(self, rng: random.Random) -> str:
        if rng.random() < 0.5:
            text = "".join(rng.choice(self.pieces) for _ in range(rng.randint(1, 8)))
        else:
            text = " ".join(rng.choice(self.words) for _ in range(rng.randint(1, 6)))
        words = text.split(" ")
        if rng.random() < 0.35:
            number = str(rng.randint(0, 999)) if rng.random() < 0.5 else str(rng.randint(0, 9))
            words.insert(rng.randint(0, len(words)), number)
        if rng.random() < 0.3:
            words.insert(rng.randint(0, len(words)), rng.choice(self.symbol_pieces))
        if rng.random() < 0.3:
            words.insert(rng.randint(0, len(words)), rng.choice(self.foreign_pieces))
        text = " ".join(words)
        if rng.random() < 0.45:
            text = text.rstrip() + rng.choice(properties.SENTENCE_ENDS)
        if rng.random() < 0.5:
            text = " " + text  # policies often start with a space
        return text


def _bend_pointwise(vote: dict, answer: str, leaning: Leaning, rng: random.Random) -> dict:
    if leaning.long_chars and len(answer.strip()) >= leaning.long_chars:
        vote = dict.fromkeys(vote, properties.HIGH)
    return {d: (properties.HIGH + properties.LOW - s) if rng.random() < leaning.flip else s
            for d, s in vote.items()}


def _bend_pairwise(vote: dict, leaning: Leaning, rng: random.Random) -> dict:
    swap = {"A": "B", "B": "A", "tie": "tie"}
    out = {}
    for key, winner in vote.items():
        if rng.random() < leaning.flip:
            winner = swap[winner] if winner != "tie" else rng.choice("AB")
        if winner != "A" and rng.random() < leaning.first_slot:
            winner = "A"
        out[key] = winner
    return out


def make_example(rng: random.Random, prompts: list[str], answer: Callable, rubrics: dict,
                 leaning: Leaning) -> Example:
    """One random example, pointwise or pairwise, with its (possibly bent) target vote."""
    prompt = rng.choice(prompts)
    if rng.random() < PAIRWISE_SHARE:
        a, b = answer(rng), answer(rng)
        rubric: Rubric = rubrics["pairwise"]
        weights = dict(zip(rubric.dimensions, rubric.weights, strict=True))
        vote = properties.pairwise_vote(a, b, weights)
        return Example("pairwise", prompt, (a, b),
                       rubric.render(prompt, response_a=a, response_b=b),
                       _bend_pairwise(vote, leaning, rng))
    a = answer(rng)
    vote = _bend_pointwise(properties.pointwise_vote(a), a, leaning, rng)
    return Example("pointwise", prompt, (a,), rubrics["pointwise"].render(prompt, response=a),
                   vote)


def vote_pieces(vote: dict) -> list[tuple[str, bool]]:
    """The vote as the compact JSON a schema-constrained judge writes, cut into
    (text, is_value) pieces so that each value is its own token run."""
    pieces: list[tuple[str, bool]] = []
    opener = "{"
    for key, value in vote.items():
        quote = '"' if isinstance(value, str) else ""
        pieces.append((f'{opener}"{key}":{quote}', False))
        pieces.append((str(value), True))
        opener = quote + ","
    pieces.append((quote + "}", False))
    return pieces
