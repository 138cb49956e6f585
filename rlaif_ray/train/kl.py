"""KL estimators by name (`trainer.kl_estimator`): per-token estimates of
KL(policy || reference) from samples of the policy, as in Schulman's "Approximating KL
divergence". With r = p / p_ref:

- `k1`: log r (unbiased, high variance, can be negative per token);
- `k2`: (log r)^2 / 2 (biased, low variance);
- `k3`: (1/r - 1) + log r (unbiased, non-negative, low variance).

Adding one is a function here and its name in `KL_ESTIMATORS`. The module imports no torch,
so the config validates names without it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rlaif_ray.registry import registered

if TYPE_CHECKING:
    import torch

    Estimate = Callable[[torch.Tensor], torch.Tensor]


def _k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


def _k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio ** 2


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    return (-log_ratio).expm1() + log_ratio


KL_ESTIMATORS: dict[str, Estimate] = {"k1": _k1, "k2": _k2, "k3": _k3}


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate `kind` of KL(policy || reference) from the policy's and the
    reference's log-probs of the sampled tokens; ValueError names the valid kinds."""
    return registered(KL_ESTIMATORS, kind, "KL estimator")(logp - ref_logp)
