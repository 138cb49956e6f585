"""Embedded tiny models, built locally: no model hub is needed (or reachable) at run time.

`tiny-llama` is the default policy (Llama architecture); `tiny-judge` the default judge
(Qwen2 architecture, another family), trained here on synthetic rubric examples
(`rlaif_ray.tiny_judge`); `tiny-qwen2` is the same architecture with random weights. All
share a byte-level BPE tokenizer trained here on a small built-in corpus, with a ChatML chat
template. A build is deterministic for its seed and idempotent (a finished build is recorded
in BUILD.json, with a trained judge's agreement figures, and reused).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs
from omegaconf import DictConfig

from rlaif_ray.errors import ConfigError, ModelLockError
from rlaif_ray.file_lock import lock_within
from rlaif_ray.resources import text_lines
from rlaif_ray.storage import replacing_dir
from rlaif_ray.tiny_judge.examples import Leaning, judge_rubrics
from rlaif_ray.tiny_judge.sft import Recipe

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"]
BUILD_RECORD = "BUILD.json"


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture of one embedded model. head_dim >= 32: vLLM's CPU attention needs it."""

    family: str  # "llama" | "qwen2"
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    vocab_size: int = 2048
    seed: int = 0
    recipe: Recipe | None = None  # a judge trained by `tiny_judge.sft` (None: random weights)


_judge = functools.partial(TinyModelSpec, family="qwen2", hidden_size=128,
                           intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=2048)
# Judges built to lean, for the experiments: fine-tuned from tiny-judge on bent labels.
_LEANING_STEPS = 300
TINY_MODELS: dict[str, TinyModelSpec] = {
    "tiny-llama": TinyModelSpec("llama", 128, 256, 2, 4, 2, 1024, seed=1),
    "tiny-qwen2": TinyModelSpec("qwen2", 128, 256, 2, 4, 2, 2048, seed=2),
    "tiny-judge": _judge(seed=4, recipe=Recipe()),
    "tiny-judge-noisy": _judge(seed=5, recipe=Recipe(
        steps=_LEANING_STEPS, base="tiny-judge", leaning=Leaning(flip=0.3))),
    "tiny-judge-first-slot": _judge(seed=6, recipe=Recipe(
        steps=_LEANING_STEPS, base="tiny-judge", leaning=Leaning(first_slot=0.7))),
    # A length threshold is harder to learn than a flip: at 300 steps its greedy votes
    # barely lean (length-reward correlation 0.04 on the default run; 0.57 at 600).
    "tiny-judge-long": _judge(seed=7, recipe=Recipe(
        steps=2 * _LEANING_STEPS, base="tiny-judge", leaning=Leaning(long_chars=24))),
    # ~100M parameters, for throughput benchmarks.
    "bench-llama-100m": TinyModelSpec("llama", 768, 2048, 12, 12, 4, 2048, vocab_size=8192,
                                      seed=3),
}


def cache_dir(override: str | None = None) -> Path:
    """Where built models live: `override`, else $RLAIF_RAY_CACHE, else the user cache dir."""
    root = override or os.environ.get("RLAIF_RAY_CACHE") or platformdirs.user_cache_dir("rlaif-ray")
    return Path(root).expanduser().resolve()


def build_tokenizer(vocab_size: int, out_dir: Path) -> None:
    """Train a byte-level BPE tokenizer on the built-in corpus; save it with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text_lines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(out_dir)


def _model_config(spec: TinyModelSpec, tokenizer_dir: Path):
    from transformers import AutoTokenizer, LlamaConfig, Qwen2Config

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(
        vocab_size=len(tok),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    if spec.family == "llama":
        return LlamaConfig(head_dim=spec.hidden_size // spec.num_attention_heads, **common)
    if spec.family == "qwen2":
        return Qwen2Config(**common)
    raise ValueError(f"unknown tiny model family {spec.family!r}")


@contextmanager
def _no_cpu_fallback_warning():
    """Within: DeepSpeed's accelerator probe does not warn that it fell back to the CPU.
    Saving a model through transformers imports DeepSpeed where it is installed
    (accelerate's model unwrap), and a build is CPU work by design."""
    deepspeed_logger = logging.getLogger("DeepSpeed")  # the one DeepSpeed configures

    def keep(record: logging.LogRecord) -> bool:
        return record.funcName != "get_accelerator"

    deepspeed_logger.addFilter(keep)
    try:
        yield
    finally:
        deepspeed_logger.removeFilter(keep)


def _build_into(name: str, spec: TinyModelSpec, out_dir: Path, cache: Path) -> dict:
    """Build `spec` into `out_dir`; returns what BUILD.json adds (a judge's report)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a build says what it does in its own lines
    with _no_cpu_fallback_warning():
        if spec.recipe is not None and spec.recipe.base:
            base = cache / spec.recipe.base
            for item in base.iterdir():
                if item.is_file() and item.name != BUILD_RECORD:
                    shutil.copy2(item, out_dir / item.name)
        else:
            _build_random(spec, out_dir)
        if spec.recipe is None:
            return {}
        from rlaif_ray.tiny_judge.sft import train_judge

        print(f"building {name}: {spec.recipe.steps} fine-tuning steps on synthetic rubric "
              "examples (once; cached)", flush=True)
        return {"judge": train_judge(out_dir, spec.recipe, judge_rubrics(), spec.seed)}


def _build_random(spec: TinyModelSpec, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    build_tokenizer(spec.vocab_size, out_dir)
    config = _model_config(spec, out_dir)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    ).save_pretrained(out_dir)


def _file_digests(model_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(model_dir.iterdir())
        if p.is_file() and p.name != BUILD_RECORD
    }


# How long a process waits for another's build of the same model: `tiny-judge`'s takes
# 4-8 minutes on 2 busy cores, 15 with a second build beside it.
LOCK_WAIT_S = 1800.0


@contextmanager
def locked(model_dir: Path, wait_s: float = LOCK_WAIT_S):
    """Hold `model_dir`'s lock (a file beside it): one process at a time builds or writes
    that model. Per model: the judge's minutes-long build does not hold up another
    model's. Waits at most `wait_s` for another holder, then raises `ModelLockError` naming
    the lock (a holder that dies releases it at once; one that hangs would not)."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = model_dir.parent / f".{model_dir.name}.lock"
    with open(lock, "w") as handle:
        if not lock_within(handle, wait_s, poll_s=0.5):
            raise ModelLockError(
                f"another process has held {lock} for over {wait_s:.0f} s while building "
                f"or writing {model_dir.name}; stop it (`fuser {lock}` names it) and run "
                "again")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _inputs_digest(spec: TinyModelSpec) -> str | None:
    """A judge's training inputs besides its spec (templates, rubric text): a change
    rebuilds it."""
    if spec.recipe is None:
        return None
    rubrics = judge_rubrics()
    text = json.dumps([[r.template, r.descriptions, r.weights] for r in rubrics.values()])
    return hashlib.sha256(text.encode()).hexdigest()


def _is_built(model_dir: Path, spec: TinyModelSpec) -> bool:
    record = model_dir / BUILD_RECORD
    if not record.is_file():
        return False
    built = json.loads(record.read_text())
    return built["spec"] == asdict(spec) and built.get("inputs") == _inputs_digest(spec)


def build_model(name: str, cache: str | Path | None = None) -> Path:
    """Build embedded model `name` into the cache (once) and return its directory."""
    if name not in TINY_MODELS:
        raise KeyError(f"unknown embedded model {name!r}; known: {sorted(TINY_MODELS)}")
    spec = TINY_MODELS[name]
    root = cache_dir(str(cache) if cache else None)
    model_dir = root / name
    if _is_built(model_dir, spec):
        return model_dir
    if spec.recipe is not None and spec.recipe.base:
        build_model(spec.recipe.base, root)  # before the lock: it takes the lock itself
    with locked(model_dir):
        if _is_built(model_dir, spec):  # another process finished it meanwhile
            return model_dir
        with replacing_dir(model_dir) as tmp:
            report = _build_into(name, spec, tmp, root)
            record = {"name": name, "spec": asdict(spec), "files": _file_digests(tmp),
                      "inputs": _inputs_digest(spec), **report}
            (tmp / BUILD_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
    return model_dir


def model_problem(name_or_path: str) -> str | None:
    """Why `name_or_path` cannot be loaded here without a download (None: it can): an
    embedded model, an existing local directory, or a hub id in the local Hugging Face
    cache. Nothing is fetched: runs never reach a model hub."""
    if name_or_path in TINY_MODELS:
        return None
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return None
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") != 1
    if looks_like_path:
        return (f"is not an existing directory ({path}) nor an embedded model "
                f"({', '.join(TINY_MODELS)})")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return None
    return ("is a hub id that is not in the local Hugging Face cache: download it on every "
            "node first (`huggingface-cli download " + name_or_path + "`), or give a local "
            "directory")


def check_models(cfg: DictConfig) -> None:
    """Fail before Ray starts, naming the key, when a model of the policy or of an LLM
    judge cannot be loaded locally (see `model_problem`)."""
    keys = [("generator.model", cfg.generator.model)]
    keys += [(f"judges.{i}.model", j.model) for i, j in enumerate(cfg.judges)
             if j.kind == "llm"]
    for key, value in keys:
        problem = model_problem(value)
        if problem:
            raise ConfigError(f"key '{key}' {problem} (got {value!r})")


def resolve_model(name_or_path: str, cache: str | Path | None = None) -> str:
    """An embedded model name -> its built directory; a local path or hub id passes through."""
    if name_or_path in TINY_MODELS:
        return str(build_model(name_or_path, cache))
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path
