"""Programmatic checks that join the ensemble as a `rule` judge.

Score = weighted share of checks passed, in [0, 1]; deterministic, so one vote suffices."""

from __future__ import annotations

import json
import re
from typing import Any


def check_passes(check: Any, text: str) -> bool:
    """Whether `text` passes one check (a `CheckConfig`)."""
    kind = check.type
    if kind == "regex":
        return re.search(check.pattern, text) is not None
    if kind == "not_regex":
        return re.search(check.pattern, text) is None
    if kind == "contains":
        return check.pattern in text
    if kind == "max_words":
        return len(text.split()) <= check.value
    if kind == "min_words":
        return len(text.split()) >= check.value
    if kind == "json_valid":
        try:
            json.loads(text)
        except json.JSONDecodeError:
            return False
        return True
    raise ValueError(f"unknown check type {kind!r}")


def rule_score(checks: list[Any], text: str) -> float:
    """Weighted share of `checks` that `text` passes."""
    total = sum(c.weight for c in checks)
    return sum(c.weight for c in checks if check_passes(c, text)) / total
