"""judge: votes/s decoding under the rubric's JSON schema divided by unconstrained decoding
(same engine, requests and vote count), and the prefix-cache gain for repeated votes on one
item: the marginal cost of votes 2..k relative to vote 1. Also the verdicts/s of the
`judge` job (default config: tiny generator, one tiny-qwen2 judge replica plus the rule
judge; replica start-up excluded) per judge replica."""

from __future__ import annotations

import gc
import os
from typing import Any

from bench.common import BENCH_MODEL, repeat, timed

ITEMS = 32
VOTES = 3


def judge_job_verdicts_per_s(runs: int, cache: str | None) -> dict[str, Any]:
    """Verdicts/s of `rlaif-ray judge` on the default config, one judge replica, each run in
    a fresh run directory."""
    import tempfile

    import ray
    from rich.console import Console

    from rlaif_ray.config import load_config
    from rlaif_ray.judge_job import run_judge

    def once() -> float:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = load_config("conf/default.yaml", [
                f"run.dir={run_dir}", "prompts.limit=16", "judges.0.replicas=1"]
                + ([f"cache_dir={cache}"] if cache else []))
            result = run_judge(cfg, Console(quiet=True))
        ray.shutdown()
        return result.verdicts_per_s

    return repeat(once, runs)


def run(runs: int = 3, cache: str | None = None) -> dict[str, Any]:
    from rlaif_ray.config import load_config
    from rlaif_ray.data.prompts import load_prompts
    from rlaif_ray.judge.items import JudgeRequest
    from rlaif_ray.judge.llm_judge import LLMJudge
    from rlaif_ray.judge.rubric import Rubric
    from rlaif_ray.model_source import ModelSource
    from rlaif_ray.models import resolve_model
    from rlaif_ray.vllm_engine import EngineSpec

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    cfg = load_config("conf/default.yaml", [
        f"judges.0.model={BENCH_MODEL}", "judges.0.max_model_len=1024",
        "judges.0.kv_cache_gib=1", "judges.0.max_tokens=64"]
        + ([f"cache_dir={cache}"] if cache else []))
    judge_cfg = cfg.judges[0]
    rubric = Rubric.from_config(cfg.rubric)
    model = resolve_model(judge_cfg.model, cfg.cache_dir)
    judges = [LLMJudge("bench-judge", EngineSpec.from_config(
        judge_cfg, ModelSource("judges[0].model", model), 0), 1.0,
                       judge_cfg.max_tokens)]
    requests = [JudgeRequest(p.prompt_id, "", rubric.render(p.prompt,
                                                            response="A short answer to it."))
                for p in load_prompts(limit=ITEMS)]
    schema = rubric.json_schema()
    judges[0].vote(requests[:2], VOTES, schema)  # warm-up (grammar compile, kernels)

    def votes_per_s(with_schema: bool, votes: int = VOTES) -> float:
        judges[0].llm.reset_prefix_cache()
        seconds, _ = timed(lambda: judges[0].vote(requests, votes,
                                                  schema if with_schema else None))
        return len(requests) * votes / seconds

    structured = repeat(lambda: votes_per_s(True), runs)
    free = repeat(lambda: votes_per_s(False), runs)
    one = repeat(lambda: ITEMS / votes_per_s(True, 1), runs)  # seconds for 1 vote per item
    many = repeat(lambda: ITEMS * VOTES / votes_per_s(True, VOTES), runs)
    marginal = (many["median"] - one["median"]) / ((VOTES - 1) * one["median"])
    judges.clear()  # free the engine before the job and later cases start their own
    gc.collect()
    job = judge_job_verdicts_per_s(runs, cache)
    detail = (f"structured {structured['median']:.1f} vs free {free['median']:.1f} votes/s; "
              f"votes 2..{VOTES} cost {marginal:.2f} x vote 1; judge job "
              f"{job['median']:.1f} verdicts/s per replica")
    return {"unit": "votes/s", "detail": detail, "structured": structured, "unconstrained": free,
            "ratio": structured["median"] / free["median"], "goal": "report",
            "seconds_one_vote_per_item": one, f"seconds_{VOTES}_votes_per_item": many,
            "marginal_vote_cost_vs_first": marginal,
            "judge_job_verdicts_per_s_per_replica": job,
            "setup": {"model": BENCH_MODEL, "items": ITEMS, "votes": VOTES,
                      "max_tokens": judge_cfg.max_tokens}}
