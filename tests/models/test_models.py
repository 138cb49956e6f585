import json
import subprocess
import sys

import pytest
from transformers import AutoConfig, AutoTokenizer

from rlaif_ray.models import BUILD_RECORD, TINY_MODELS, build_model, resolve_model


def test_every_embedded_model_has_head_dim_at_least_32():
    for name, spec in TINY_MODELS.items():
        assert spec.hidden_size // spec.num_attention_heads >= 32, name


def test_build_is_deterministic_across_caches(tmp_path, model_cache):
    first = build_model("tiny-llama", model_cache)
    second = build_model("tiny-llama", tmp_path / "other")
    # A cache on shared storage serves other users too: the directory gets mkdir's mode.
    assert second.stat().st_mode & 0o777 == second.parent.stat().st_mode & 0o777
    assert first != second
    digests = [json.loads((d / BUILD_RECORD).read_text())["files"] for d in (first, second)]
    assert digests[0] == digests[1]
    assert "model.safetensors" in digests[0]


@pytest.mark.slow
def test_a_build_prints_only_what_it_built(tmp_path):
    """On a machine without a GPU too: DeepSpeed, which transformers imports to save a
    model where it is installed, would warn that it fell back to the CPU."""
    done = subprocess.run([sys.executable, "-m", "rlaif_ray.cli", "models", "build",
                           "--cache", str(tmp_path), "tiny-llama"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).splitlines() == [f"tiny-llama: {tmp_path / 'tiny-llama'}"]


def test_build_is_idempotent(model_cache):
    path = build_model("tiny-qwen2", model_cache)
    stamps = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    assert build_model("tiny-qwen2", model_cache) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps


def test_policy_and_judge_are_different_families_with_chat_template(model_cache):
    policy = build_model("tiny-llama", model_cache)
    judge = build_model("tiny-qwen2", model_cache)
    assert AutoConfig.from_pretrained(policy).model_type == "llama"
    assert AutoConfig.from_pretrained(judge).model_type == "qwen2"
    tok = AutoTokenizer.from_pretrained(policy)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}],
                                   add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"
    assert tok.decode(tok.encode("{\"safety\": 7}")) == "{\"safety\": 7}"


def test_resolve_model_passes_paths_and_hub_ids_through(tmp_path, model_cache):
    assert resolve_model("tiny-llama", model_cache) == str(build_model("tiny-llama",
                                                                       model_cache))
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"


def test_unknown_embedded_model_is_named(model_cache):
    with pytest.raises(KeyError, match="tiny-gpt"):
        build_model("tiny-gpt", model_cache)


def test_a_model_being_built_does_not_hold_up_another(tmp_path):
    """While one process builds the judge (minutes) under its lock, another builds the
    policy: each model has its own lock."""
    import threading

    from rlaif_ray.models import locked

    with locked(tmp_path / "tiny-judge"):
        builder = threading.Thread(target=build_model, args=("tiny-llama", tmp_path),
                                   daemon=True)
        builder.start()
        builder.join(timeout=120)
        assert not builder.is_alive(), "tiny-llama's build waited for tiny-judge's lock"
    assert (tmp_path / "tiny-llama" / BUILD_RECORD).is_file()
    assert not (tmp_path / "tiny-judge").exists()


def test_a_model_lock_waits_for_its_holder_and_names_one_that_never_lets_go(tmp_path):
    import os
    import time

    from held_lock import assert_waits_for_its_holder, hold

    from rlaif_ray.errors import ModelLockError
    from rlaif_ray.models import locked

    model_dir = tmp_path / "tiny-judge"
    with locked(model_dir, wait_s=0):  # nobody else: at once
        pass
    lock = tmp_path / ".tiny-judge.lock"
    # Another process building it: this one waits until that build is done.
    assert_waits_for_its_holder(lock, lambda: locked(model_dir, wait_s=60))
    other = hold(lock)  # one that hangs
    began = time.monotonic()
    hung = r"held .*\.tiny-judge\.lock for over 0 s while building or writing tiny-judge"
    with pytest.raises(ModelLockError, match=hung), locked(model_dir, wait_s=0.3):
        pass
    assert time.monotonic() - began >= 0.3
    os.close(other)
