"""The rubric: dimensions and weights, judge prompt templates, output schemas, strict
parsing of votes, and per-dimension normalisation before weighting."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.modes import RUBRIC_MODES, SCORE_MAX, SCORE_MIN, RubricMode, rubric_mode

_PLACEHOLDER_RE = {name: re.compile("|".join(re.escape(p) for p in mode.placeholders))
                   for name, mode in RUBRIC_MODES.items()}
# The rubric when a config names none: dimension -> (weight, description).
DEFAULT_DIMENSIONS = {
    "factual_accuracy": (0.35, "Are the claims true and free of errors?"),
    "instruction_following": (0.3, "Does it do what the prompt asks?"),
    "completeness": (0.2, "Does it cover everything the prompt needs?"),
    "safety": (0.15, "Is it free of harmful or dangerous content?"),
}


class VoteParseError(ValueError):
    """A judge reply that is not a valid vote (it becomes an abstention)."""


def load_template(path: str | None, mode: str) -> str:
    """The judge prompt template for `mode`: from `path`, or the built-in one; checks that
    every placeholder the mode needs is present."""
    if path is None:
        built_in = resources.files("rlaif_ray.resources").joinpath(f"templates/{mode}.txt")
        text = built_in.read_text("utf-8")
        source = f"built-in {mode} template"
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"key 'rubric.{mode}_template': file {file} does not exist")
        text, source = file.read_text("utf-8"), str(file)
    missing = [p for p in rubric_mode(mode).placeholders if p not in text]
    if missing:
        raise ConfigError(f"{source} (rubric.{mode}_template) is missing placeholder(s) "
                          f"{', '.join(missing)}")
    return text


@dataclass(frozen=True)
class Rubric:
    mode: str
    dimensions: tuple[str, ...]
    weights: tuple[float, ...]
    descriptions: tuple[str, ...]
    template: str
    safety_gate: float | None = None

    @classmethod
    def from_config(cls, rubric_cfg: DictConfig) -> Rubric:
        dims = list(rubric_cfg.dimensions.items())
        mode = rubric_cfg.mode
        return cls(
            mode=mode,
            dimensions=tuple(name for name, _ in dims),
            weights=tuple(float(d.weight) for _, d in dims),
            descriptions=tuple(d.description for _, d in dims),
            template=load_template(rubric_cfg[f"{mode}_template"], mode),
            safety_gate=rubric_cfg.safety_gate,
        )

    @property
    def kind(self) -> RubricMode:
        """This rubric's mode, as the object that judges by it."""
        return RUBRIC_MODES[self.mode]

    def _dimension_lines(self) -> str:
        return "\n".join(f"- {name}: {text}" if text else f"- {name}"
                         for name, text in zip(self.dimensions, self.descriptions, strict=True))

    def render(self, prompt: str, response: str = "", response_a: str = "",
               response_b: str = "") -> str:
        """The judge's user message for one item (placeholders substituted once each)."""
        values = {"{prompt}": prompt, "{response}": response, "{response_a}": response_a,
                  "{response_b}": response_b, "{dimensions}": self._dimension_lines()}
        # One pass: text inserted for one placeholder is never scanned for another.
        return _PLACEHOLDER_RE[self.mode].sub(lambda m: values[m.group(0)], self.template)

    def json_schema(self) -> dict[str, Any]:
        """Schema a constrained judge decodes under, so every vote parses."""
        keys = self.kind.vote_keys(self.dimensions)
        value = copy.deepcopy(self.kind.value_schema)  # the caller's to change
        return {"type": "object", "properties": dict.fromkeys(keys, value),
                "required": keys, "additionalProperties": False}

    def parse(self, text: str) -> dict[str, Any]:
        """Strictly parse a vote: every key present with a valid value, nothing else."""
        try:
            vote = json.loads(text)
        except (json.JSONDecodeError, TypeError) as err:
            raise VoteParseError(f"not JSON: {err}") from None
        if not isinstance(vote, dict):
            raise VoteParseError("not a JSON object")
        keys = self.kind.vote_keys(self.dimensions)
        missing = [k for k in keys if k not in vote]
        extra = [k for k in vote if k not in keys]
        if missing or extra:
            raise VoteParseError(f"keys missing {missing} / unexpected {extra}")
        for key in keys:
            if not self.kind.valid_value(vote[key]):
                raise VoteParseError(f"bad value for {key!r}: {vote[key]!r}")
        return vote

    def normalise(self, scores: dict[str, int]) -> dict[str, float]:
        """Per-dimension scores 1-10 mapped to [0, 1]."""
        return {d: (scores[d] - SCORE_MIN) / (SCORE_MAX - SCORE_MIN) for d in self.dimensions}

    def overall(self, normalised: dict[str, float]) -> float:
        """Weighted mean of normalised dimension scores; 0 if the safety gate fails."""
        if (self.safety_gate is not None and "safety" in normalised
                and normalised["safety"] < self.safety_gate):
            return 0.0
        total = sum(self.weights)
        return sum(w * normalised[d] for d, w in zip(self.dimensions, self.weights,
                                                     strict=True)) / total
