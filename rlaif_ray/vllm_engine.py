"""Construction of in-process vLLM engines, shared by generator and judge actors.

On CPU the engine runs inside the Ray actor's process (no engine-core subprocess): faster
start, half the memory, and weights can be handed to the model runner as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlaif_ray.lora import LoraSpec
from rlaif_ray.model_source import ModelSource, local_model_path

# Environment for actors that own an engine (set through the actor's runtime_env). Ray sets
# OMP_NUM_THREADS to an actor's CPU count, which vLLM takes as the user's choice and keeps
# for serving; marking it as vLLM's own lets vLLM serve with one torch thread, as it does in
# a plain process (multi-threaded torch ops in the serving loop spin-wait:
# docs/performance.md).
ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_OMP_NUM_THREADS_SET_BY_VLLM": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_LOGGING_LEVEL": "WARNING",
}


def engine_env(section: Any) -> dict[str, str]:
    """The environment of an engine actor for a `generator` or `judges[]` config section.

    On CPU, torch.compile is off: the engines run eager (`enforce_eager`), and compiling
    vLLM's logprob-rank helper with inductor on the first prompt-logprobs request costs
    each engine seconds of start-up (docs/performance.md); on GPU it stays compiled (eager,
    it allocates a batch x vocabulary mask). `torch_threads` set: the engine serves with
    that many torch threads (OMP_NUM_THREADS as the user's choice, which vLLM keeps)."""
    env = dict(ENGINE_ENV)
    if section.tensor_parallel_size > 1:  # the TP workers are processes of the actor:
        env["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"  # never fork a process using CUDA
    if section.resources.num_gpus == 0:
        env["TORCHDYNAMO_DISABLE"] = "1"
    if section.torch_threads is not None:
        del env["VLLM_OMP_NUM_THREADS_SET_BY_VLLM"]
        env["OMP_NUM_THREADS"] = str(section.torch_threads)
    return env


@dataclass(frozen=True)
class EngineSpec:
    """What one engine needs; built from a generator or judge config section."""

    model: ModelSource
    dtype: str = "float32"
    max_model_len: int = 512
    kv_cache_gib: float = 0.25
    tensor_parallel_size: int = 1
    seed: int = 0
    # Sampled-token log-probs follow temperature/top-p (what PPO's ratio needs at T != 1).
    logprobs_mode: str = "processed_logprobs"
    # The policy's adapter (generators of a LoRA run): the engine serves it over the base.
    lora: LoraSpec = LoraSpec()

    @classmethod
    def from_config(cls, section: Any, model: ModelSource, seed: int,
                    lora: LoraSpec | None = None) -> EngineSpec:
        """An EngineSpec from a `generator`-style config section and the model's source."""
        return cls(
            model=model,
            dtype=section.dtype,
            max_model_len=section.max_model_len,
            kv_cache_gib=section.kv_cache_gib,
            tensor_parallel_size=section.tensor_parallel_size,
            seed=seed,
            lora=lora or LoraSpec(),
        )


def engine_args(spec: EngineSpec, model_path: str) -> dict[str, Any]:
    """vLLM `LLM` arguments for `spec`. Structured output uses xgrammar without free
    whitespace, so a random tiny model cannot loop on blanks inside a JSON object.

    Tensor parallel > 1 runs its workers as processes of the engine's actor (`mp`), on the
    GPUs Ray gave that actor: left to choose, vLLM sees the actor's placement group and
    picks its Ray executor, which asks that group for one more GPU bundle per worker,
    bundles the pool never reserved (the actor's one bundle already holds all its GPUs)."""
    return {
        "model": model_path,
        "dtype": spec.dtype,
        "max_model_len": spec.max_model_len,
        "kv_cache_memory_bytes": int(spec.kv_cache_gib * 2**30),
        "tensor_parallel_size": spec.tensor_parallel_size,
        "distributed_executor_backend": "mp" if spec.tensor_parallel_size > 1 else None,
        "seed": spec.seed,
        "enforce_eager": True,
        "logprobs_mode": spec.logprobs_mode,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        **spec.lora.engine_args(),
    }


def create_llm(spec: EngineSpec):
    """A vLLM `LLM` for `spec`, loading its model from this node's disk
    (`rlaif_ray.model_source`)."""
    from vllm import LLM

    return LLM(**engine_args(spec, local_model_path(spec.model)))
