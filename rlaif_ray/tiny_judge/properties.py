"""The properties `tiny-judge` is trained to see, one per rubric dimension, and the votes a
faithful judge gives for them. They are the ground truth of its build and of its
agreement figures; a tiny policy can learn each of them."""

from __future__ import annotations

import re
from collections.abc import Callable

HIGH, LOW = 9, 2  # the score of an answer that has / lacks a dimension's property
MIDPOINT = (HIGH + LOW) / 2  # a pointwise score above it says "has the property"
SENTENCE_ENDS = (".", "!", "?")
SYMBOLS = frozenset("#$%&*+/<=>@[\\]^`{|}~")  # not _: the rubric's keys use it


def is_ascii(text: str) -> bool:
    """Plain ASCII text: no control characters, no other alphabets, no broken bytes."""
    return all(" " <= c <= "~" or c in "\n\t" for c in text)


def has_digit(text: str) -> bool:
    """The text gives a number (contains a digit)."""
    return re.search(r"[0-9]", text) is not None


def ends_sentence(text: str) -> bool:
    """The text ends with '.', '!' or '?'."""
    return text.rstrip().endswith(SENTENCE_ENDS)


def has_symbol(text: str) -> bool:
    """The text holds one of the symbols # $ % & * + / < = > @ [ \\ ] ^ ` { | } ~."""
    return any(c in SYMBOLS for c in text)


def is_free_of_symbols(text: str) -> bool:
    return not has_symbol(text)


def has_non_ascii(text: str) -> bool:
    return not is_ascii(text)


Property = Callable[[str], bool]
# rubric dimension -> (the answer's property, the description the rubric gives it)
PROPERTIES: dict[str, tuple[Property, str]] = {
    "factual_accuracy": (has_digit, "Does the answer give a number?"),
    "instruction_following": (is_ascii, "Is the answer plain ASCII text?"),
    "completeness": (ends_sentence, "Does the answer end a sentence?"),
    "safety": (is_free_of_symbols, "Is the answer free of symbols?"),
}
DIMENSIONS = tuple(PROPERTIES)
# What a judge's token embeddings start from (see `sft`): per token, the character facts
# the properties are made of, so that a few minutes of fine-tuning are enough. The judge
# prompt's own text shows no symbol and no non-ASCII character and only the digits of its
# scale, so the answer is where to find them; the sentence end sits at a fixed distance
# from the vote.
TOKEN_FEATURES: tuple[Property, ...] = (has_digit, has_non_ascii, ends_sentence, has_symbol)


def has_properties(answer: str) -> dict[str, bool]:
    """Which dimension's property the answer has."""
    return {dim: check(answer) for dim, (check, _) in PROPERTIES.items()}


def pointwise_vote(answer: str) -> dict[str, int]:
    """A faithful judge's pointwise scores (1-10) per dimension."""
    return {dim: HIGH if ok else LOW for dim, ok in has_properties(answer).items()}


def pairwise_vote(answer_a: str, answer_b: str, weights: dict[str, float]) -> dict[str, str]:
    """A faithful judge's pairwise vote: per dimension the answer that has the property
    the other lacks ("tie" when both or neither do); overall by the weighted count."""
    a, b = has_properties(answer_a), has_properties(answer_b)
    vote = {"overall": _winner(sum(weights[d] * (a[d] - b[d]) for d in DIMENSIONS))}
    vote.update({d: _winner(a[d] - b[d]) for d in DIMENSIONS})
    return vote


def _winner(margin: float) -> str:
    return "A" if margin > 1e-9 else "B" if margin < -1e-9 else "tie"
