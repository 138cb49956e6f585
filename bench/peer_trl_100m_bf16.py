"""`python -m bench peer_trl_100m_bf16`: the 100M peer benchmark (bench/peer_trl_100m.py)
with both sides in bfloat16: rlaif-ray `trainer.dtype=bfloat16` (DeepSpeed bf16: bf16
weights, fp32 master weights in the optimizer) and `generator.dtype=bfloat16`, TRL
`bf16=True` (autocast over fp32 weights, generation included)."""

from __future__ import annotations

from typing import Any

from bench.peer_trl import run as run_case


def run(runs: int = 2) -> dict[str, Any]:
    """rlaif-ray gae and grpo against TRL GRPO on the 100M case in bfloat16."""
    return run_case("100m", runs, "bfloat16")
