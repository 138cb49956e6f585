"""`rlaif-ray judge`: generate, judge and vote over `prompts.path` without training, and
write the preference dataset. Re-running on the same `run.dir` skips prompts already judged."""

from __future__ import annotations

import time
from dataclasses import dataclass

from omegaconf import DictConfig
from rich.console import Console

from rlaif_ray.console import REVIEW_HINT, judging_cost_lines, progress_bar
from rlaif_ray.data.parts import complete_parts
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.data.records import read_parts, table_dir
from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.cost import judge_prices, priced
from rlaif_ray.judge.pairs import preference_pairs, write_pairs
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.models import check_models
from rlaif_ray.review.queue import export_review, queue_path
from rlaif_ray.rollout.stream import RolloutStream, write_batch
from rlaif_ray.startup import announce_session, engine_pools, fitted_prompts, record_config
from rlaif_ray.storage import StoragePath

JUDGE_ITERATION = 0


PAIRS_FILE = "pairs.parquet"  # the judge command's DPO pairs, in run.dir


def judged_prompt_ids(run_dir: StoragePath, iteration: int) -> set[str]:
    """Prompts whose verdicts are already written (after dropping unfinished parts)."""
    complete_parts(run_dir, iteration)
    return {r["prompt_id"] for r in read_parts(table_dir(run_dir, "verdicts", iteration),
                                                columns=["prompt_id"])}


@dataclass
class JudgeRun:
    """What one `rlaif-ray judge` run did: its statistics and the seconds spent judging
    (replica start-up excluded)."""

    stats: JudgeStats
    judge_s: float = 0.0

    @property
    def verdicts_per_s(self) -> float:
        return self.stats.items / self.judge_s if self.judge_s else 0.0


def run_judge(cfg: DictConfig, console: Console | None = None) -> JudgeRun:
    """Judge every prompt not yet judged in `run.dir`."""
    console = console or Console()
    if not cfg.judges:
        raise ConfigError("key 'judges' must list at least one judge to judge with")
    rubric = Rubric.from_config(cfg.rubric)
    prompts = load_prompts(cfg.prompts.path, cfg.prompts.limit)
    check_models(cfg)
    run_dir = record_config(cfg)
    done = judged_prompt_ids(run_dir, JUDGE_ITERATION)
    todo = [p for p in prompts if p.prompt_id not in done]
    stats = JudgeStats()
    if not todo:
        console.print(f"all {len(prompts)} prompts already judged in {run_dir}",
                      soft_wrap=True)
        return JudgeRun(stats)
    if done:
        console.print(f"skipping {len(prompts) - len(todo)} prompts already judged")
    todo = fitted_prompts(todo, cfg, console)
    announce_session(cfg, console)
    starting = "starting generator and judge replicas"
    with engine_pools(cfg, console, starting) as (generators, judges):
        start = time.perf_counter()
        stream = RolloutStream(cfg, generators, judges, rubric)
        with progress_bar(console, total=len(todo), desc="judge", unit="prompt") as bar:
            for batch in stream.run(todo, JUDGE_ITERATION):
                write_batch(batch, run_dir, JUDGE_ITERATION)
                stats.merge(batch.stats)
                bar.update(len({c.prompt_id for c in batch.candidates}))
                votes = sum(stats.votes.values())
                bar.set_postfix(votes_per_s=f"{votes / (time.perf_counter() - start):.1f}",
                                kept=f"{stats.kept_fraction:.2f}")
        judge_s = time.perf_counter() - start
    pairs = preference_pairs(run_dir, cfg.rubric.mode)
    pairs_path = write_pairs(pairs, run_dir / PAIRS_FILE)
    queued = export_review(run_dir, queue_path(run_dir), cfg.rubric.mode)
    usage = priced(stats.judge_usage, judge_prices(cfg.judges))
    for line in [*judge_report(stats, len(todo)),
                 *judging_cost_lines(usage, stats.kept, len(pairs)),
                 f"verdicts: {run_dir / 'data' / 'verdicts'}",
                 f"DPO pairs: {len(pairs)} in {pairs_path}",
                 f"review: {queued} low-confidence items in {queue_path(run_dir)}",
                 REVIEW_HINT]:
        console.print(line, soft_wrap=True)
    return JudgeRun(stats, judge_s)


def judge_report(stats: JudgeStats, prompts: int) -> list[str]:
    """What one judge command did, in short lines: verdicts by status, then the judges'
    position bias, abstention and agreement."""
    summary = stats.as_dict()

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    abstention = ", ".join(f"{j} {share(r)}" for j, r in summary["abstention_rate"].items())
    return [f"judged {prompts} prompts: {summary['items']} items, {summary['kept']} kept, "
            f"{summary['dropped']} dropped, {summary['abstained']} abstained",
            f"position bias {share(summary['position_bias'])} (50% = none); abstention "
            f"{abstention or 'n/a'}; inter-judge agreement "
            f"{share(summary['inter_judge_agreement'])}"]
