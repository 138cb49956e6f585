"""Bounded waits on Ray (the driver's, and the trainer workers' calls to the exchange and
the policy store): a wait that sees no answer within `run.stall_timeout_s` ends in a
StallError that says what it waited for."""

from __future__ import annotations

from typing import Any

import ray

from rlaif_ray.errors import StallError


def bounded_get(refs: Any, timeout_s: float, what: str) -> Any:
    """`ray.get(refs)`, or StallError naming `what` after `timeout_s` without the answer."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise StallError(f"no answer from {what} within {timeout_s:g}s "
                         f"(run.stall_timeout_s)") from None
