import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlaif_ray.data.prompts import (
    Prompt,
    PromptsError,
    fit_to_context,
    load_prompts,
    prompt_id_for,
)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_builtin_prompts_are_unique_and_nonempty():
    prompts = load_prompts()
    assert len(prompts) >= 32
    assert len({p.prompt_id for p in prompts}) == len(prompts)
    assert load_prompts(limit=5) == prompts[:5]


def test_jsonl_with_and_without_ids(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"id": 7, "prompt": "a"}), "",
                                              json.dumps({"prompt": "b"})])
    prompts = load_prompts(str(path))
    assert [p.prompt_id for p in prompts] == ["7", prompt_id_for("b")]
    assert [p.prompt for p in prompts] == ["a", "b"]


def test_parquet_prompts(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["x", "y"], "other": [1, 2]}), path)
    assert [p.prompt for p in load_prompts(str(path))] == ["x", "y"]


def test_missing_file(tmp_path):
    with pytest.raises(PromptsError, match="missing.jsonl does not exist"):
        load_prompts(str(tmp_path / "missing.jsonl"))


def test_empty_file(tmp_path):
    path = write_lines(tmp_path / "e.jsonl", [""])
    with pytest.raises(PromptsError, match="e.jsonl: no prompts"):
        load_prompts(str(path))


def test_malformed_line_names_line_and_column(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [json.dumps({"prompt": "ok"}), '{"prompt": oops}'])
    with pytest.raises(PromptsError, match=r"m.jsonl:2: malformed JSON at column 12"):
        load_prompts(str(path))


def test_missing_prompt_field_names_line(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [json.dumps({"text": "x"})])
    with pytest.raises(PromptsError, match=r"f.jsonl:1: missing 'prompt' field"):
        load_prompts(str(path))


def test_non_utf8_names_line(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"prompt": "fine"}\n{"prompt": "\xff\xfe"}\n')
    with pytest.raises(PromptsError, match=r"b.jsonl:2: not valid UTF-8"):
        load_prompts(str(path))


def test_parquet_missing_prompt_column(tmp_path):
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question": ["x"]}), path)
    with pytest.raises(PromptsError, match=r"q.parquet: missing 'prompt' column"):
        load_prompts(str(path))


def test_duplicate_ids_rejected(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps({"id": "a", "prompt": "x"}),
                                              json.dumps({"id": "a", "prompt": "y"})])
    with pytest.raises(PromptsError, match="duplicate prompt id 'a'"):
        load_prompts(str(path))


def test_empty_prompt_text_rejected(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [json.dumps({"prompt": "  "})])
    with pytest.raises(PromptsError, match=r"s.jsonl:1: 'prompt' must be a non-empty string"):
        load_prompts(str(path))


@pytest.fixture(scope="module")
def tokenizer(model_cache):
    from transformers import AutoTokenizer

    from rlaif_ray.models import build_model

    return AutoTokenizer.from_pretrained(build_model("tiny-llama", model_cache))


LONG = Prompt("long", "word " * 300)
SHORT = Prompt("short", "Hi")


def test_too_long_prompts_are_skipped_with_their_ids(tokenizer):
    kept, changed = fit_to_context([SHORT, LONG], tokenizer, 64, "skip")
    assert kept == [SHORT] and changed == ["long"]


def test_too_long_prompts_can_be_truncated_to_fit(tokenizer):
    kept, changed = fit_to_context([SHORT, LONG], tokenizer, 64, "truncate")
    assert changed == ["long"] and kept[0] == SHORT
    ids = tokenizer.apply_chat_template([{"role": "user", "content": kept[1].prompt}],
                                        add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert len(ids) <= 64 and kept[1].prompt.startswith("word word")


def test_too_long_prompt_error_names_the_prompt(tokenizer):
    with pytest.raises(PromptsError, match=r"prompt 'long' is \d+ tokens; at most 64 fit"):
        fit_to_context([SHORT, LONG], tokenizer, 64, "error")


@pytest.mark.parametrize("limit, told", [(256, True), (48, False), (4, False)])
def test_a_limit_above_the_prompts_there_are_is_said(tokenizer, limit, told):
    from rich.console import Console

    from rlaif_ray.config import load_config
    from rlaif_ray.data.prompts import fit_for_generator

    cfg = load_config("conf/default.yaml", [f"prompts.limit={limit}"])
    console = Console(record=True, width=80)
    prompts = load_prompts(None, limit)
    assert len(fit_for_generator(prompts, cfg, tokenizer, console)) == min(limit, 48)
    said = "prompts.limit=256, but the built-in set holds 48 prompts: using all 48"
    assert (said in console.export_text()) == told
