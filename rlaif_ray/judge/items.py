"""What judges judge, how they are asked and what they answer: an item (one answer, or a
pair of one prompt's answers), a request for votes on it, and a replica's reply."""

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


@dataclass(frozen=True)
class JudgeRequest:
    """One judge message about one item, in one order (pairwise: AB or BA; pointwise: "")."""

    item_id: str
    order: str
    message: str


@dataclass(frozen=True)
class JudgeReply:
    """A judge replica's answer to one request: one text per vote asked for (None where
    that vote failed, with its error), the tokens each vote read and wrote, and the
    request's seconds."""

    texts: list[str | None]
    errors: list[str | None]
    prompt_tokens: list[int]
    completion_tokens: list[int]
    seconds: float
    replica: str

    @property
    def answered(self) -> bool:
        """Whether any vote came back (a request with none counts as a failure)."""
        return any(text is not None for text in self.texts)
