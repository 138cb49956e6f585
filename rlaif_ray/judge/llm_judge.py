"""An `llm` judge replica: a Ray actor owning an in-process vLLM engine with the judge model.

Votes decode under the rubric's JSON schema (structured output), so every vote parses; the
k votes on one request are k samples of one prompt, sharing its prefix in the KV cache."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from rlaif_ray.judge.items import JudgeReply, JudgeRequest
from rlaif_ray.model_source import model_source
from rlaif_ray.vllm_engine import EngineSpec, create_llm, engine_env


class LLMJudge:
    """Body of an `llm` judge actor."""

    def __init__(self, replica: str, spec: EngineSpec, temperature: float,
                 max_tokens: int) -> None:
        self.replica = replica
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.llm = create_llm(spec)
        self.tokenizer = self.llm.get_tokenizer()

    def info(self) -> dict[str, Any]:
        return {"replica": self.replica, "pid": os.getpid()}

    def vote(self, requests: list[JudgeRequest], votes: int,
             schema: dict[str, Any] | None) -> list[JudgeReply]:
        """`votes` sampled replies to each request's message, decoded under the JSON `schema`
        (None: unconstrained), with the token counts per vote."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        constraint = StructuredOutputsParams(json=schema) if schema else None
        params = SamplingParams(n=votes, temperature=self.temperature,
                                max_tokens=self.max_tokens, structured_outputs=constraint)
        prompts = [self.tokenizer.apply_chat_template(
            [{"role": "user", "content": r.message}], add_generation_prompt=True,
            tokenize=False) for r in requests]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        seconds = (time.perf_counter() - start) / max(len(requests), 1)
        # The engine reads a request's prompt once for all its votes: counted on the first.
        return [JudgeReply(
            texts=[o.text for o in out.outputs], errors=[None] * len(out.outputs),
            prompt_tokens=[len(out.prompt_token_ids or [])] + [0] * (len(out.outputs) - 1),
            completion_tokens=[len(o.token_ids) for o in out.outputs], seconds=seconds,
            replica=self.replica) for out in outputs]


def replicas(judge_cfg: Any, cache_dir: str | None,
             seed: int) -> tuple[type, Callable[[int, str], tuple], dict[str, str]]:
    """How an `llm` judge's replicas are made (`rlaif_ray.judge.kinds`): the actor class,
    each replica's arguments by index and name (its engine seeded apart from the
    generators'), and the actor environment."""
    source = model_source(judge_cfg.model, f"the model of judge {judge_cfg.name!r}", cache_dir)
    return LLMJudge, lambda i, replica: (
        replica, EngineSpec.from_config(judge_cfg, source, seed + 1000 + i),
        judge_cfg.temperature, judge_cfg.max_tokens), engine_env(judge_cfg)
