"""Where a run's numbers go: `metrics.jsonl` (one object per iteration), TensorBoard event
files, Ray metrics for the dashboard (`ray_rlaif_*` on the metrics endpoint), PNG plots and
`summary.json` (what the console prints is in `rlaif_ray.console`)."""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rlaif_ray.judge.cost import add_usage, cost_per, total_cost
from rlaif_ray.judge.modes import SCORE_MAX, SCORE_MIN
from rlaif_ray.storage import Location, StoragePath
from rlaif_ray.tracking import TrackerSet

STAGES = ("generate_s", "judge_s", "train_s", "sync_s")


GAUGES = (  # name, description, tags beyond `run` and `job` (every series carries those)
    ("tokens_per_s", "generated tokens per second (last iteration)", ()),
    ("votes_per_s", "judge votes per second (last iteration)", ()),
    ("kept_fraction", "share of judged items whose verdict stands", ()),
    ("reward_mean", "mean judged reward of the policy's answers", ()),
    ("kl", "KL(policy || reference) per token", ()),
    ("length_bias", "correlation of answer length (characters) with reward", ()),
    ("sync_seconds", "seconds to push weights to every generator", ()),
    ("iteration", "last completed iteration", ()),
    ("judge_tokens", "tokens each judge read (prompt) and wrote (completion), last "
     "iteration", ("judge", "side")),
    ("judge_cost", "each priced judge's cost (judges[].price_per_mtok), last iteration",
     ("judge",)),
    ("cost_per_kept_verdict", "priced judges' cost per verdict that stands", ()),
    ("queue_depth", "batches being judged / judge requests waiting", ("queue",)),
    ("replicas", "replicas per pool", ("pool",)),
)
RUN_TAGS = ("run", "job")


def submission_id() -> str:
    """This driver's Ray job submission id ("" when not run by `ray job submit`)."""
    config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    return (config.get("metadata") or {}).get("job_submission_id", "")


class MetricsPublisher:
    """Body of the `rlaif-metrics` actor that owns the `ray.util.metrics` gauges (an actor's
    metrics reach the node's metrics agent, hence the dashboard and Prometheus, as
    `ray_rlaif_*`). Ray exports a gauge only for values set since its last export, so the
    actor re-sets every known value each `refresh_s`."""

    def __init__(self, refresh_s: float = 1.0) -> None:
        import threading

        from ray.util.metrics import Gauge

        self.gauges = {name: Gauge(f"rlaif_{name}", description=text,
                                   tag_keys=RUN_TAGS + tags)
                       for name, text, tags in GAUGES}
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._refresh, args=(refresh_s,), daemon=True).start()

    def _refresh(self, refresh_s: float) -> None:
        while not self.stop.wait(refresh_s):
            with self.lock:
                for (name, tags), value in self.values.items():
                    self.gauges[name].set(value, tags=dict(tags) or None)

    def set_many(self, updates: list[tuple[str, float, dict[str, str]]]) -> None:
        """Several (name, value, tags) at once: an iteration's gauges change together."""
        with self.lock:
            for name, value, tags in updates:
                self.values[(name, tuple(sorted(tags.items())))] = value
                self.gauges[name].set(value, tags=tags)


class DashboardMetrics:
    """Driver-side handle: forwards values to the metrics actor without waiting, labelled
    with the run's name (`run`) and its job submission id (`job`, "" outside a job)."""

    def __init__(self, run: str) -> None:
        import ray

        self.labels = {"run": run, "job": submission_id()}
        self.publisher = ray.remote(MetricsPublisher).options(
            name="rlaif-metrics", num_cpus=0, get_if_exists=True).remote()

    def set_many(self, updates: list[tuple[str, float | None, dict[str, str]]]) -> None:
        """(name, value, tags) of several gauges in one call to the actor (None: no value)."""
        known = [(name, float(value), {**self.labels, **tags})
                 for name, value, tags in updates if value is not None]
        if known:
            self.publisher.set_many.remote(known)

    def queue(self, batches: int, waiting_requests: int) -> None:
        """Queue depths of the judging stream."""
        self.set_many([("queue_depth", batches, {"queue": "batches_judging"}),
                       ("queue_depth", waiting_requests, {"queue": "judge_requests_waiting"})])

    def iteration(self, row: dict[str, Any]) -> None:
        """Publish one iteration's metrics row, all its gauges at once."""
        rollout_s = max(row["judge_s"], 1e-9)
        updates: list[tuple[str, float | None, dict[str, str]]] = [
            ("tokens_per_s", row["tokens_generated"] / rollout_s, {}),
            ("votes_per_s", row["judge_votes"] / rollout_s, {}),
            *((name, row[name], {}) for name in
              ("kept_fraction", "reward_mean", "kl", "length_bias", "iteration")),
            ("sync_seconds", row["sync_s"], {}),
            ("cost_per_kept_verdict", row["cost_per_kept_verdict"], {})]
        for judge, usage in row["judge_usage"].items():
            updates += [("judge_tokens", usage["prompt_tokens"], {"judge": judge,
                                                                  "side": "prompt"}),
                        ("judge_tokens", usage["completion_tokens"], {"judge": judge,
                                                                      "side": "completion"}),
                        ("judge_cost", usage["cost"], {"judge": judge})]
        self.set_many(updates)


class RunRecorder:
    """metrics.jsonl, the run's trackers (`rlaif_ray.tracking`: TensorBoard, MLflow, W&B)
    and the dashboard's gauges, for one run directory."""

    def __init__(self, run_dir: StoragePath, trackers: TrackerSet) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        self.trackers = trackers
        self.dashboard = DashboardMetrics(run_dir.name)

    def record(self, row: dict[str, Any]) -> None:
        self.path.append_text(json.dumps(row) + "\n")
        self.trackers.log(row)
        self.dashboard.iteration(row)

    def close(self, files: list[StoragePath], failed: bool) -> None:
        """Close the trackers, attaching `files` (the plots, summary and config)."""
        self.trackers.finish(files, failed)


def read_metrics(run_dir: Location) -> list[dict[str, Any]]:
    """The rows of `run.dir/metrics.jsonl`, one per committed iteration (none: [])."""
    path = StoragePath.of(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Location, rows: list[dict[str, Any]]) -> None:
    """Replace `run.dir/metrics.jsonl` with `rows`."""
    (StoragePath.of(run_dir) / "metrics.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows))


# One PNG each: (file name, title, y label, [(metrics key, legend label)], fixed y range)
PLOTS = (
    ("reward", "mean judged reward", "reward", [("reward_mean", "reward")], (0.0, 1.0)),
    ("kl", "KL to the reference policy", "KL per token", [("kl", "KL")], None),
    ("kept_fraction", "verdicts that stand", "fraction of items",
     [("kept_fraction", "kept")], (0.0, 1.0)),
    ("biases", "judge biases", "", [("position_bias", "position bias (0.5 = none)"),
                                    ("length_bias", "length-reward correlation")],
     (-1.0, 1.0)),
)
STACKED = (("judge_s", "generate + judge"), ("train_s", "train"), ("sync_s", "weight sync"))


def write_plots(run_dir: StoragePath, rows: list[dict[str, Any]]) -> list[StoragePath]:
    """`plot_figures` as PNG files in `run.dir/plots/` (none without rows)."""
    if not rows:
        return []
    import matplotlib.pyplot as plt

    paths = []
    for name, fig in plot_figures(run_dir.name, rows).items():
        image = io.BytesIO()
        fig.savefig(image, dpi=100, format="png")
        plt.close(fig)
        path = run_dir / "plots" / f"{name}.png"
        path.write_bytes(image.getvalue())
        paths.append(path)
    return paths


def plot_figures(run_name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Charts over iterations, titled with the run's name: reward, KL, kept fraction and
    judge biases (on fixed axes where the quantity has a range), the judged score per
    rubric dimension (pointwise runs), and each iteration's stage times stacked. Returns
    matplotlib figures by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    iterations = [r["iteration"] for r in rows]
    figures = {}
    for name, title, ylabel, series, limits in PLOTS:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in series:
            ax.plot(iterations, [_nan(r.get(key)) for r in rows], marker="o", label=label)
        if limits:
            ax.set_ylim(*limits)
        if len(series) > 1:
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.legend(fontsize=8)
        figures[name] = (fig, ax, title, ylabel)
    dimensions = list(dict.fromkeys(d for r in rows for d in r.get("dimension_scores") or {}))
    if dimensions:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for dim in dimensions:
            ax.plot(iterations, [_nan((r.get("dimension_scores") or {}).get(dim)) for r in rows],
                    marker="o", label=dim)
        ax.set_ylim(SCORE_MIN, SCORE_MAX)
        ax.legend(fontsize=8)
        figures["dimensions"] = (fig, ax, "judged score per rubric dimension", "score")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = [0.0] * len(rows)
    for key, label in STACKED:
        heights = [r.get(key) or 0.0 for r in rows]
        ax.bar(iterations, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.plot(iterations, [r["iteration_s"] for r in rows], "k.", label="iteration (wall)")
    ax.legend(fontsize=8)
    figures["stage_times"] = (fig, ax, "seconds per iteration, by stage", "seconds")

    for fig, ax, title, ylabel in figures.values():
        ax.set_title(f"{run_name}: {title}", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        fig.tight_layout()
    return {name: fig for name, (fig, *_) in figures.items()}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def judging_cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The judges' usage over `rows` (metrics rows), and the cost per kept verdict."""
    usage = add_usage(r.get("judge_usage") or {} for r in rows)
    kept = sum(r.get("verdicts_kept", 0) for r in rows)
    return {"judge_usage": usage, "verdicts_kept": kept, "judge_cost": total_cost(usage),
            "cost_per_kept_verdict": cost_per(usage, kept)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run in a few numbers (written as summary.json)."""
    if not rows:
        return {"iterations": 0}
    first, last = rows[0], rows[-1]
    return {
        "iterations": len(rows),
        "reward_first": first["reward_mean"],
        "reward_last": last["reward_mean"],
        "reward_gain": (last["reward_mean"] or 0) - (first["reward_mean"] or 0),
        "kl_last": last["kl"],
        "kept_fraction_mean": sum(r["kept_fraction"] for r in rows) / len(rows),
        "logprob_gap_max": max((r["logprob_gap"] or 0) for r in rows),
        "policy_lag_max": max(r.get("policy_lag_max", 0) for r in rows),
        "tokens_generated": sum(r["tokens_generated"] for r in rows),
        "judge_votes": sum(r["judge_votes"] for r in rows),
        **judging_cost(rows),
        "seconds": {k: sum(r[k] for r in rows) for k in STAGES + ("iteration_s",)},
    }


def draw_plots_aside(run_dir: StoragePath, rows: list[dict[str, Any]]) -> Future:
    """`write_plots` on a thread of its own, while the trainer and the pools wind down and
    leave the CPU idle; the future gives the files written."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="plots")
    drawing = executor.submit(write_plots, run_dir, rows)
    executor.shutdown(wait=False)  # its thread ends with this one task
    return drawing


def write_summary(run_dir: StoragePath, rows: list[dict[str, Any]],
                  startup: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Write summary.json from the run's metrics rows (and this invocation's `startup`
    seconds); returns the summary."""
    summary = summarise(rows)
    if startup is not None:
        summary["startup"] = startup
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
