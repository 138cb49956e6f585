"""Choices by name (estimators, rubric modes, rule checks, pairwise rewards, ...): each is a
dict from name to its implementation, looked up here so that an unknown name fails the same
way everywhere, naming the valid ones in their registered order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def registered(registry: Mapping[str, T], name: str, what: str) -> T:
    """`registry[name]`; ValueError "unknown `what` 'name'; choose one of ..." otherwise."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of "
                         f"{', '.join(registry)}") from None
