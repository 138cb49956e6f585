"""The toy task the end-to-end tests train on: a rule judge rewards answers that start with a
vowel (about a quarter of a random policy's answers), so the tiny random models have a
signal PPO can learn."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

from rlaif_ray.data.records import read_parts, table_dir

TOY_JUDGE = ("judges=[{name: rules, kind: rule, checks: [{type: regex, "
             "pattern: '^\\s*[aeiouAEIOU]'}]}]")


DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "conf" / "default.yaml")


def toy_args(model_cache, run_dir, iterations):
    """`rlaif-ray run` arguments of the toy task: 4 prompts x 4 answers per iteration."""
    return [DEFAULT_CONFIG, f"run.dir={run_dir}", f"cache_dir={model_cache}", TOY_JUDGE,
            f"run.iterations={iterations}", "prompts.limit=4", "generator.samples_per_prompt=4"]


def run_cli(args, env, timeout=900, cwd=None):
    """`rlaif-ray run ARGS` as its own process (and session: a kill takes its Ray too)."""
    return subprocess.run([sys.executable, "-m", "rlaif_ray.cli", "run", *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          start_new_session=True, cwd=cwd)


def answers(run_dir, iteration):
    """The run's sampled answers of `iteration`, as sorted (response_id, response) pairs."""
    rows = read_parts(table_dir(run_dir, "candidates", iteration))
    return sorted((r["response_id"], r["response"]) for r in rows)


def assert_dataset_complete(run_dir, iterations, per_iteration):
    """Every iteration holds `per_iteration` candidates, each with exactly one verdict."""
    for k in range(iterations):
        ids = [r["response_id"] for r in read_parts(table_dir(run_dir, "candidates", k))]
        verdicts = Counter(r["response_id"] for r in read_parts(table_dir(run_dir, "verdicts",
                                                                          k)))
        assert len(ids) == len(set(ids)) == per_iteration, k  # no loss, no duplicate
        assert set(verdicts) == set(ids) and set(verdicts.values()) == {1}, k
