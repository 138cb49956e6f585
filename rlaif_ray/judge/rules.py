"""Programmatic checks that join the ensemble as a `rule` judge.

Score = weighted share of checks passed, in [0, 1]; deterministic, so one vote suffices.
The checks are a registry (`CHECKS`, by `judges[].checks[].type`): adding one is a
function of (check config, text) here and its name."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from rlaif_ray.registry import registered


def _json_valid(check: Any, text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


CHECKS: dict[str, Callable[[Any, str], bool]] = {
    "regex": lambda check, text: re.search(check.pattern, text) is not None,
    "not_regex": lambda check, text: re.search(check.pattern, text) is None,
    "contains": lambda check, text: check.pattern in text,
    "max_words": lambda check, text: len(text.split()) <= check.value,
    "min_words": lambda check, text: len(text.split()) >= check.value,
    "json_valid": _json_valid,
}


def check_passes(check: Any, text: str) -> bool:
    """Whether `text` passes one check (a `CheckConfig`)."""
    return registered(CHECKS, check.type, "check type")(check, text)


def rule_score(checks: list[Any], text: str) -> float:
    """Weighted share of `checks` that `text` passes."""
    total = sum(c.weight for c in checks)
    return sum(c.weight for c in checks if check_passes(c, text)) / total
