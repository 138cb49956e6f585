"""`rlaif-ray generate`: sample answers with log-probs from the generator pool and save them,
so the pool can be used and inspected before the rest of the pipeline runs."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from rlaif_ray.console import progress_bar
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.data.records import CANDIDATE_SCHEMA, Candidate, to_table, write_table
from rlaif_ray.models import check_models
from rlaif_ray.startup import announce_session, engine_pools, fitted_prompts, record_config
from rlaif_ray.storage import StoragePath


def run_generate(cfg: DictConfig, console: Console | None = None) -> StoragePath:
    """Generate `samples_per_prompt` answers for every prompt; write them as Parquet under
    `run.dir/generate/`; print a few. Returns the Parquet path."""
    console = console or Console()
    prompts = load_prompts(cfg.prompts.path, cfg.prompts.limit)
    check_models(cfg)
    run_dir = record_config(cfg)
    prompts = fitted_prompts(prompts, cfg, console)
    announce_session(cfg, console)
    starting = f"starting {cfg.generator.replicas} generator replica(s)"
    with engine_pools(cfg, console, starting, judges=False) as (pool, _):
        rows: list[Candidate] = []
        with progress_bar(console, total=len(prompts), desc="generate", unit="prompt") as bar:
            for batch in pool.generate_stream(prompts):
                rows.extend(batch)
                bar.update(len({r.prompt_id for r in batch}))
                bar.set_postfix(tokens=sum(len(r.response_token_ids) for r in rows))
    path = write_table(to_table(rows, CANDIDATE_SCHEMA, run_id=run_dir.name),
                       run_dir / "generate" / "candidates.parquet")
    console.print(sample_table(rows))
    console.print(f"{len(rows)} samples for {len(prompts)} prompts written to {path}",
                  soft_wrap=True)
    return path


def sample_table(rows: list[Candidate], limit: int = 8) -> Table:
    """A few samples as a rich table: prompt, answer, mean log-prob, finish reason, replica."""
    table = Table(title="samples")
    for column in ("prompt", "response", "mean logprob", "finish", "replica", "version"):
        table.add_column(column, overflow="fold")
    for row in rows[:limit]:
        mean_lp = sum(row.logprobs) / max(len(row.logprobs), 1)
        table.add_row(row.prompt[:40], row.response[:60], f"{mean_lp:.2f}",
                      row.finish_reason, row.generator_replica, str(row.policy_version))
    return table
