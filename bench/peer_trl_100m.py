"""`python -m bench peer_trl_100m`: the peer benchmark (bench/peer_trl.py) on
bench-llama-100m, 2 prompts x 8 answers of 32 tokens, 5 iterations."""

from __future__ import annotations

from typing import Any

from bench.peer_trl import run as run_case


def run(runs: int = 2) -> dict[str, Any]:
    """rlaif-ray gae and grpo against TRL GRPO on the 100M case, `runs` times each."""
    return run_case("100m", runs)
