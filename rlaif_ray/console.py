"""What a run prints: where to watch it, its progress, and its end, readable at 80 columns.

On a terminal, progress is a redrawn tqdm bar per iteration and per rollout; anywhere else
(job logs, CI, a file) it is one plain line per stage and per iteration, because a job log
keeps every redraw. The engines' own output stays in Ray's log files unless `ray.verbose`
(`-v`) streams it here (see `rlaif_ray.cluster.connect`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from rlaif_ray.cluster import Session
from rlaif_ray.judge.cost import cost_per, total_cost
from rlaif_ray.judge.modes import SCORE_MAX

# What the last lines of a run or judge job say to do with the review queue.
REVIEW_HINT = "  `rlaif-ray review serve RUN_DIR` opens them on a page for people to judge"

def progress_bar(console: Console, **options: Any) -> tqdm:
    """A tqdm bar that draws only on a terminal (plain output gets no cursor codes)."""
    return tqdm(disable=not console.is_terminal, dynamic_ncols=True, **options)


def session_lines(session: Session) -> list[str]:
    """Where to watch a run: the dashboard (and how to log in), metrics, worker logs."""
    lines = []
    if session.dashboard_url:
        lines.append(f"Ray dashboard: {session.dashboard_url}")
        if os.environ.get("RAY_AUTH_MODE") == "token":
            lines.append("  token auth: paste the token `ray get-auth-token` prints")
    if session.metrics_url:
        lines.append(f"Prometheus metrics: {session.metrics_url}")
    if session.logs_dir:
        lines += ["worker logs (-v streams them here):", f"  {session.logs_dir}"]
    return lines


class RunProgress:
    """Progress of a run's iterations and their stages."""

    def __init__(self, console: Console, start: int, total: int) -> None:
        self.console = console
        self.bar = progress_bar(console, desc="iterations", unit="iter", initial=start,
                                total=total)

    def stage(self, iteration: int, text: str) -> None:
        """Iteration `iteration` entered a stage (`text` says which, and on what)."""
        if self.console.is_terminal:
            self.bar.set_postfix_str(text)
        else:
            self.console.print(f"iteration {iteration}: {text}", soft_wrap=True)

    @contextmanager
    def rollout(self, iteration: int, prompts: int) -> Iterator[tqdm]:
        """A bar over the prompts of one rollout; yields it (call `update(n)`)."""
        self.stage(iteration, f"generate + judge {prompts} prompts")
        with progress_bar(self.console, total=prompts, unit="prompt", leave=False,
                          desc=f"iteration {iteration} rollout") as bar:
            yield bar

    def done(self, row: dict[str, Any]) -> None:
        """An iteration is committed: its metrics row."""
        line = (f"reward {_fmt(row['reward_mean'], '.3f')}, KL {_fmt(row['kl'], 'kl')}, "
                f"kept {_fmt(row['kept_fraction'], '.0%')}, ")
        if row.get("human_verdicts"):  # people's verdicts this update used
            line += f"{row['human_verdicts']} by people, "
        line += f"{row['iteration_s']:.1f} s"
        self.bar.update(1)
        if self.console.is_terminal:
            self.bar.set_postfix_str(line)
        else:
            self.console.print(f"iteration {row['iteration']} done: {line}", soft_wrap=True)

    def close(self) -> None:
        self.bar.close()


KL_ROUNDING = 1e-6  # per-token KL below this is float32 rounding of equal log-probs


def _fmt(value: float | None, spec: str) -> str:
    """`value` in `spec`; spec "kl" is 3 decimals, or 2 significant digits in exponent
    form below 0.01 (KL is often 1e-4), and 0 below float32's rounding of log-probs
    (iteration 0's policy is the reference: its KL is rounding, such as -7e-09)."""
    if value is None:
        return "-"
    if spec == "kl":
        spec = ".1e" if KL_ROUNDING <= abs(value) < 0.01 else ".3f"
        value = value if abs(value) >= KL_ROUNDING else 0.0
    return format(value, spec)


SUMMARY_COLUMNS = (  # header, metrics key, format
    ("iter", "iteration", "d"),
    ("reward", "reward_mean", ".3f"),
    ("KL", "kl", "kl"),
    ("kept", "kept_fraction", ".0%"),
    ("rollout s", "judge_s", ".1f"),
    ("train s", "train_s", ".1f"),
    ("sync s", "sync_s", ".2f"),
    ("total s", "iteration_s", ".1f"),
)


def summary_table(rows: list[dict[str, Any]], metrics_path: str) -> Table:
    """One screen at 80 columns: per-iteration reward, KL, kept fraction and stage times;
    the caption says where every other metric is."""
    table = Table(title="run summary", box=box.SIMPLE_HEAD, caption=f"all metrics: "
                  f"{metrics_path}", caption_justify="left")
    for header, _, _ in SUMMARY_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(_fmt(row.get(key), spec) for _, key, spec in SUMMARY_COLUMNS))
    return table


def dimension_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each rubric dimension's mean judged score (1-10), first iteration -> last (pointwise
    runs)."""
    if not rows:
        return []
    first, last = rows[0].get("dimension_scores") or {}, rows[-1].get("dimension_scores") or {}
    if not first and not last:
        return []
    lines = [f"judged score per dimension, iteration {rows[0]['iteration']} -> "
             f"{rows[-1]['iteration']}:"]
    for dim in dict.fromkeys([*first, *last]):
        lines.append(f"  {dim[:28]:<28} {_fmt(first.get(dim), '.2f')} -> "
                     f"{_fmt(last.get(dim), '.2f')} (of {SCORE_MAX})")
    return lines


def judging_cost_lines(usage: dict[str, dict[str, Any]], kept: int,
                       pairs: int | None = None) -> list[str]:
    """Each judge's votes and tokens, and, where judges are priced, what judging cost and
    cost per kept verdict (and per DPO pair); nothing when no judge read a token (rules)."""
    if not any(u["prompt_tokens"] or u["completion_tokens"] for u in usage.values()):
        return []
    lines = [f"judge {j}: {u['votes']:,} votes; tokens {u['prompt_tokens']:,} in, "
             f"{u['completion_tokens']:,} out" for j, u in usage.items()]
    cost = total_cost(usage)
    if cost is not None:
        per = [f"{cost_per(usage, n):.3g} per {what}" for n, what in
               ((kept, "kept verdict"), (pairs, "DPO pair")) if n]
        lines.append(f"judging cost {cost:.4g}" + (f" ({', '.join(per)})" if per else ""))
    return lines


def end_lines(summary: dict[str, Any], run_dir: str, queued: int, queue: str) -> list[str]:
    """The run's last words: the reward's change, where the outputs and the review queue
    are."""
    return [
        f"reward {_fmt(summary.get('reward_first'), '.3f')} -> "
        f"{_fmt(summary.get('reward_last'), '.3f')} over {summary['iterations']} iterations",
        *judging_cost_lines(summary.get("judge_usage") or {}, summary.get("verdicts_kept", 0)),
        f"outputs: {run_dir}",
        "  metrics.jsonl, summary.json, plots/, tensorboard/, data/, policy/",
        f"review: {queued} low-confidence items in {queue}",
        REVIEW_HINT,
    ]
