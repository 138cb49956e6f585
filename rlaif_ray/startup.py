"""The start-up the commands (`run`, `judge`, `generate`) share: the run directory's
recorded config, the prompts fitted to the policy's context, the Ray session announced on
the console, and the engine pools started in parallel and always shut down."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig
from rich.console import Console

from rlaif_ray.cluster import Session, connect
from rlaif_ray.config import to_yaml
from rlaif_ray.console import session_lines
from rlaif_ray.data.prompts import Prompt, fit_for_generator
from rlaif_ray.judge.pools import JudgePool, start_judges, wait_for_judges
from rlaif_ray.models import resolve_model
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.storage import StoragePath


def record_config(cfg: DictConfig) -> StoragePath:
    """`run.dir` as a storage path (absolute, or a URI), with the resolved config written
    to its config.yaml."""
    run_dir = StoragePath.of(cfg.run.dir)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    return run_dir


def load_tokenizer(model_path: str):
    """The policy's tokenizer (for the prompts' lengths)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def fitted_prompts(prompts: list[Prompt], cfg: DictConfig, console: Console) -> list[Prompt]:
    """`prompts` fitted to the generator's context with the policy's tokenizer."""
    model_path = resolve_model(cfg.generator.model, cfg.cache_dir)
    return fit_for_generator(prompts, cfg, load_tokenizer(model_path), console)


def announce_session(cfg: DictConfig, console: Console) -> Session:
    """Join or start Ray (`ray.*`) and print where to watch it."""
    session = connect(cfg.ray)
    for line in session_lines(session):
        console.print(line, soft_wrap=True)
    return session


@contextmanager
def engine_pools(cfg: DictConfig, console: Console, message: str, judges: bool = True
                 ) -> Iterator[tuple[GeneratorPool, list[JudgePool]]]:
    """The generator pool and, with `judges`, every judge's pool, their engines loading in
    parallel under a `message` spinner; yields them once all are ready and shuts them down
    on the way out, whatever happened (a replica that failed to start included)."""
    generators: GeneratorPool | None = None
    pools: list[JudgePool] = []
    try:
        with console.status(message):
            generators = GeneratorPool.from_config(cfg, cfg.generator.model, wait=False)
            if judges:
                pools = start_judges(cfg, wait=False)
            generators.wait_ready()
            wait_for_judges(pools)
        yield generators, pools
    finally:
        for pool in pools:
            pool.shutdown()
        if generators is not None:
            generators.shutdown()


def import_trainer_modules() -> None:
    """Import what starting the trainer needs (torch, Ray Train, Ray Data: seconds of CPU),
    on a thread while Ray starts rather than after it."""
    for module in ("torch", "ray.train.torch", "ray.data", "rlaif_ray.train.worker"):
        importlib.import_module(module)
