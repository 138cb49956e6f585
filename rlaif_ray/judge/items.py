"""What judges judge: one answer (pointwise) or a pair of one prompt's answers (pairwise)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgeItem:
    """One judged item: its id (the response's, or `<a>|<b>` for a pair), the prompt, the
    answers' ids and texts (`response_b` set for a pair), and the policy version and
    iteration that wrote them (every vote and verdict on it carries them)."""

    item_id: str
    prompt_id: str
    prompt: str
    response_a: str
    text_a: str
    policy_version: int
    iteration: int
    response_b: str | None = None
    text_b: str | None = None
