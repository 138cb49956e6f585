"""`python -m bench experiments [NAME ...] [--seeds N] [--iterations K]`: the method's
claims measured on the tiny task, each as two arms over a few seeds.

Every run is a real `rlaif-ray run` of the embedded default with one LLM judge: `tiny-judge`
or one of its leaning variants (a noisy judge, one that favours the first slot, one that
favours long answers). Learning is read against the ground truth the judges were trained on
(`rlaif_ray.tiny_judge.properties`): the `true score` of an iteration is the mean weighted
share of the rubric's properties its answers have, whatever the judge said. Results go to
bench/results/experiments.json and plots to docs/experiments/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS, format_spread, machine, plot_curves, spread
from rlaif_ray.config import default_config_path
from rlaif_ray.data.records import read_parts, table_dir
from rlaif_ray.tiny_judge import properties
from rlaif_ray.tiny_judge.examples import judge_rubrics

PLOTS = Path(__file__).resolve().parents[1] / "docs" / "experiments"
WEIGHTS = dict(zip(properties.DIMENSIONS, judge_rubrics()["pointwise"].weights, strict=True))


@dataclass(frozen=True)
class Experiment:
    """Two or more arms (config overrides) of one run setting, judged by `judge`."""

    judge: str
    arms: dict[str, list[str]]
    question: str
    setting: list[str] = field(default_factory=list)


EXPERIMENTS = {
    "self_consistency": Experiment(
        "tiny-judge-noisy",
        {"filter on": [], "filter off": ["voting.max_score_spread=1.0"]},
        "A judge trained on 30% flipped labels: does dropping verdicts whose votes disagree "
        "speed learning, and how many flipped labels does it remove?"),
    "curriculum": Experiment(
        "tiny-judge-noisy",
        {"confident first": [], "no curriculum": ["curriculum.start_confidence=0.0"]},
        "Confident verdicts first (floor 0.6 falling to 0 over 3 iterations) vs all at once."),
    "position_bias": Experiment(
        "tiny-judge-first-slot",
        {"both orders": [], "A/B only": ["voting.both_orders=false"]},
        "A pairwise judge that favours the first slot: position_bias shows it; does asking "
        "both orders keep it out of the rewards?",
        ["rubric.mode=pairwise", "generator.samples_per_prompt=4"]),
    "length_bias": Experiment(
        "tiny-judge-long",
        {"no penalty": [], "length_penalty 1": ["reward.length_penalty=1.0"]},
        "A judge that scores every dimension high for answers of 24+ characters: length_bias "
        "shows it; does reward.length_penalty (taking the length dependence out of the "
        "training rewards) counter it?"),
}


def mean_true_score(answers: list[str]) -> float:
    """The mean `true_score` of an iteration's answers."""
    return statistics.fmean(true_score(a) for a in answers)


def true_score(answer: str) -> float:
    """The weighted share of the rubric's properties the answer has (0-1)."""
    has = properties.has_properties(answer)
    return sum(WEIGHTS[d] * has[d] for d in properties.DIMENSIONS) / sum(WEIGHTS.values())


def _run(judge: str, overrides: list[str], run_dir: Path, seed: int, iterations: int) -> None:
    judges = (f"judges=[{{name: judge, kind: llm, model: {judge}, "
              "resources: {num_cpus: 0.5}}]")
    cmd = [sys.executable, "-m", "rlaif_ray.cli", "run", str(default_config_path()),
           f"run.dir={run_dir}", f"run.seed={seed}", f"run.iterations={iterations}", judges,
           "ray.dashboard=false", *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def _flips(votes: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(labels, flipped labels, flipped labels in dropped verdicts) of pointwise votes: a
    label is one vote's side on one dimension (score above `properties.MIDPOINT`), flipped
    when it contradicts the answer's property."""
    items = {v["item_id"]: v for v in verdicts if v["item_kind"] == "response"}
    labels = flipped = removed = 0
    for vote in votes:
        verdict = items.get(vote["item_id"])
        if verdict is None or not vote["scores"]:
            continue
        has = properties.has_properties(verdict["response"])
        for dim, score in dict(vote["scores"]).items():
            wrong = (score > properties.MIDPOINT) != has[dim]
            labels += 1
            flipped += wrong
            removed += wrong and verdict["status"] == "dropped"
    return labels, flipped, removed


def _first_listed_wins(verdicts: list[dict[str, Any]]) -> float | None:
    """Share of decisive standing pair verdicts won by the answer listed first."""
    decided = [v["winner"] for v in verdicts
               if v["item_kind"] == "pair" and v["status"] == "kept" and v["winner"] != "tie"]
    return sum(w == "A" for w in decided) / len(decided) if decided else None


def measure(run_dir: Path) -> dict[str, Any]:
    """Per-iteration figures of one finished run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out: dict[str, Any] = {k: [] for k in ("true_score", "reward_mean", "kept_fraction",
                                            "position_bias", "length_bias", "answer_chars",
                                            "first_listed_wins")}
    labels = flipped = removed = 0
    for row in rows:
        k = row["iteration"]
        answers = [c["response"] for c in read_parts(table_dir(run_dir, "candidates", k))]
        verdicts = read_parts(table_dir(run_dir, "verdicts", k))
        out["true_score"].append(mean_true_score(answers))
        out["answer_chars"].append(statistics.fmean(len(a) for a in answers))
        out["first_listed_wins"].append(_first_listed_wins(verdicts))
        for key in ("reward_mean", "kept_fraction", "position_bias", "length_bias"):
            out[key].append(row[key])
        n, f, r = _flips(read_parts(table_dir(run_dir, "votes", k)), verdicts)
        labels, flipped, removed = labels + n, flipped + f, removed + r
    out["flipped_label_share"] = flipped / labels if labels else None
    out["flipped_removed_share"] = removed / flipped if flipped else None
    return out


def _tail_mean(series: list[float | None]) -> float | None:
    values = [v for v in series[-2:] if v is not None]
    return statistics.fmean(values) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """An arm over its seeds: start and final true score, gain, and the bias figures
    (median, min, max over seeds; `final` = mean of the last two iterations)."""
    def over_seeds(fn):
        return spread([fn(r) for r in runs])

    return {
        "true_score_start": over_seeds(lambda r: r["true_score"][0]),
        "true_score_final": over_seeds(lambda r: _tail_mean(r["true_score"])),
        "true_score_gain": over_seeds(lambda r: _tail_mean(r["true_score"]) - r["true_score"][0]),
        "reward_final": over_seeds(lambda r: _tail_mean(r["reward_mean"])),
        "kept_fraction": over_seeds(lambda r: statistics.fmean(r["kept_fraction"])),
        "position_bias": over_seeds(lambda r: _tail_mean(r["position_bias"])),
        "first_listed_wins": over_seeds(lambda r: _tail_mean(r["first_listed_wins"])),
        "length_bias": over_seeds(lambda r: r["length_bias"][0]),
        "answer_chars_final": over_seeds(lambda r: _tail_mean(r["answer_chars"])),
        "flipped_label_share": over_seeds(lambda r: r["flipped_label_share"]),
        "flipped_removed_share": over_seeds(lambda r: r["flipped_removed_share"]),
    }


def plot(name: str, experiment: Experiment, arms: dict[str, list[dict[str, Any]]]) -> Path:
    """True score per iteration, each arm's median over seeds with its min-max band."""
    return plot_curves(PLOTS / f"{name}.png",
                       {arm: [r["true_score"] for r in runs] for arm, runs in arms.items()},
                       f"{name} ({experiment.judge})", "true score")


def table(results: dict[str, Any]) -> str:
    keys = ("true_score_start", "true_score_final", "true_score_gain", "kept_fraction",
            "flipped_removed_share", "position_bias", "first_listed_wins", "length_bias",
            "answer_chars_final")
    lines = ["| experiment | arm | " + " | ".join(keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for name, result in results.items():
        for arm, summary in result["arms"].items():
            lines.append(f"| {name} | {arm} | " +
                         " | ".join(format_spread(summary[k]) for k in keys) + " |")
    return "\n".join(lines)


def run_experiment(name: str, seeds: int, iterations: int, work: Path) -> dict[str, Any]:
    """Every arm of `name` over `seeds` seeds, arms alternating within each seed."""
    experiment = EXPERIMENTS[name]
    arms: dict[str, list[dict[str, Any]]] = {arm: [] for arm in experiment.arms}
    for seed in range(seeds):
        for arm, overrides in experiment.arms.items():
            run_dir = work / name / arm.replace(" ", "_").replace("/", "") / f"seed{seed}"
            if not (run_dir / "summary.json").is_file():  # a finished run is measured again
                _run(experiment.judge, experiment.setting + overrides, run_dir, seed,
                     iterations)
            arms[arm].append(measure(run_dir))
            print(f"{name} / {arm} / seed {seed}: true score "
                  f"{arms[arm][-1]['true_score'][0]:.2f} -> "
                  f"{arms[arm][-1]['true_score'][-1]:.2f}", flush=True)
    return {"judge": experiment.judge, "question": experiment.question,
            "setting": experiment.setting, "overrides": experiment.arms,
            "seeds": seeds, "iterations": iterations,
            "plot": str(plot(name, experiment, arms).relative_to(PLOTS.parents[1])),
            "arms": {arm: summarize(runs) for arm, runs in arms.items()}, "runs": arms}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--out", type=Path, default=RESULTS / "experiments.json")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the runs here (default: a temporary folder); finished "
                             "runs found there are measured, not run again")
    ns = parser.parse_args(argv)
    for name in ns.names:
        if name not in EXPERIMENTS:
            parser.error(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    results = json.loads(ns.out.read_text()).get("experiments", {}) if ns.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="rlaif-experiments-") as scratch:
        work = ns.work or Path(scratch)
        for name in ns.names or list(EXPERIMENTS):
            results[name] = run_experiment(name, ns.seeds, ns.iterations, work)
            ns.out.parent.mkdir(parents=True, exist_ok=True)
            ns.out.write_text(json.dumps({"machine": machine(), "experiments": results},
                                         indent=2))
    print(table({n: results[n] for n in ns.names or list(EXPERIMENTS)}))


if __name__ == "__main__":
    main()
