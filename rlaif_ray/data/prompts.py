"""Prompt sets: the built-in one, or a user's JSONL / Parquet file with a `prompt` column.

Every problem names the file and, for JSONL, the line; nothing is read half-way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class PromptsError(ValueError):
    """A prompts file that cannot be used, naming the file, line or column."""


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    prompt: str


def prompt_id_for(text: str) -> str:
    """Stable id of a prompt without an explicit `id`: a short hash of its text."""
    return "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _row_to_prompt(row: dict, where: str) -> Prompt:
    if "prompt" not in row:
        raise PromptsError(f"{where}: missing 'prompt' field (found: {sorted(row)})")
    text = row["prompt"]
    if not isinstance(text, str) or not text.strip():
        raise PromptsError(f"{where}: 'prompt' must be a non-empty string (got {text!r})")
    raw_id = row.get("id")
    return Prompt(str(raw_id) if raw_id is not None else prompt_id_for(text), text)


def _read_jsonl(path: Path, data: bytes) -> list[Prompt]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad_line = data[: err.start].count(b"\n") + 1
        raise PromptsError(f"{path}:{bad_line}: not valid UTF-8 (byte {err.start})") from None
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptsError(f"{path}:{number}: malformed JSON at column {err.colno}: "
                               f"{err.msg}") from None
        if not isinstance(row, dict):
            raise PromptsError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        prompts.append(_row_to_prompt(row, f"{path}:{number}"))
    return prompts


def _read_parquet(path: Path) -> list[Prompt]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:
        raise PromptsError(f"{path}: cannot read Parquet: {err}") from None
    if "prompt" not in table.column_names:
        raise PromptsError(f"{path}: missing 'prompt' column (columns: {table.column_names})")
    rows = table.select([c for c in ("id", "prompt") if c in table.column_names]).to_pylist()
    return [_row_to_prompt(row, f"{path} row {i}") for i, row in enumerate(rows)]


def _check_unique(prompts: list[Prompt], source: str) -> None:
    seen: set[str] = set()
    for p in prompts:
        if p.prompt_id in seen:
            raise PromptsError(f"{source}: duplicate prompt id {p.prompt_id!r}")
        seen.add(p.prompt_id)


def load_prompts(path: str | None = None, limit: int | None = None) -> list[Prompt]:
    """Load prompts from `path` (JSONL or Parquet), or the built-in set when `path` is None."""
    if path is None:
        source = "built-in prompts"
        data = resources.files("rlaif_ray.resources").joinpath("prompts.jsonl").read_bytes()
        prompts = _read_jsonl(Path(source), data)
    else:
        file = Path(path).expanduser()
        source = str(file)
        if not file.is_file():
            raise PromptsError(f"prompts file {file} does not exist")
        if file.suffix == ".parquet":
            prompts = _read_parquet(file)
        elif file.suffix in (".jsonl", ".json"):
            prompts = _read_jsonl(file, file.read_bytes())
        else:
            raise PromptsError(f"{file}: unsupported prompts format (use .jsonl or .parquet)")
    if not prompts:
        raise PromptsError(f"{source}: no prompts")
    _check_unique(prompts, source)
    return prompts[:limit] if limit else prompts


def fit_to_context(prompts: list[Prompt], tokenizer, max_prompt_tokens: int,
                   policy: str) -> tuple[list[Prompt], list[str]]:
    """Apply `prompts.too_long` to prompts whose chat-templated length exceeds
    `max_prompt_tokens`: skip them, truncate their text, or raise. Returns the prompts to
    use and the ids of those skipped or truncated."""
    kept, changed = [], []
    for p in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": p.prompt}],
                                            add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        excess = len(ids) - max_prompt_tokens
        if excess <= 0:
            kept.append(p)
            continue
        if policy == "error":
            raise PromptsError(f"prompt {p.prompt_id!r} is {len(ids)} tokens; at most "
                               f"{max_prompt_tokens} fit (generator.max_model_len - "
                               f"generator.max_tokens); set prompts.too_long=skip or truncate")
        changed.append(p.prompt_id)
        if policy == "truncate":
            text_ids = tokenizer.encode(p.prompt, add_special_tokens=False)
            keep = max(len(text_ids) - excess, 1)
            kept.append(Prompt(p.prompt_id, tokenizer.decode(text_ids[:keep])))
    return kept, changed


def fit_for_generator(prompts: list[Prompt], cfg, tokenizer, console) -> list[Prompt]:
    """`fit_to_context` with the policy's tokenizer and the generator's limits; reports
    what was skipped or truncated, and a `prompts.limit` above the prompts there are."""
    gen, limit = cfg.generator, cfg.prompts.limit
    if limit is not None and len(prompts) < limit:
        console.print(f"prompts.limit={limit}, but {cfg.prompts.path or 'the built-in set'} "
                      f"holds {len(prompts)} prompts: using all {len(prompts)}")
    kept, changed = fit_to_context(prompts, tokenizer, gen.max_model_len - gen.max_tokens,
                                   cfg.prompts.too_long)
    if changed:
        action = "truncated" if cfg.prompts.too_long == "truncate" else "skipped"
        console.print(f"{action} {len(changed)} prompt(s) longer than "
                      f"{gen.max_model_len - gen.max_tokens} tokens: {changed[:5]}")
    if not kept:
        raise PromptsError("no prompt fits generator.max_model_len - generator.max_tokens")
    return kept
