"""Packaged data: the embedded default config, judge templates, built-in prompts and the
corpus the tokenizer is trained on."""

from __future__ import annotations

import json
from importlib import resources


def text_lines() -> list[str]:
    """The built-in prompts, then the corpus's non-empty lines."""
    pkg = resources.files(__name__)
    prompts = [json.loads(line)["prompt"]
               for line in pkg.joinpath("prompts.jsonl").read_text("utf-8").splitlines()
               if line.strip()]
    corpus = pkg.joinpath("corpus.txt").read_text("utf-8").splitlines()
    return prompts + [line for line in corpus if line.strip()]
