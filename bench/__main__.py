"""`python -m bench [CASE ...]`: run benchmark cases, write bench/results/<case>.json, print
a markdown table of medians and ratios. `python -m bench experiments ...` runs the method's
experiments instead (bench/experiments.py), `python -m bench learning ...` the learning
benchmark (bench/learning.py)."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

from bench.common import RESULTS, write_result

CASES = ("rollout_overhead", "judge", "weight_sync", "ppo_step", "iteration")
# Only when named: the peer cases need the `peer` extra; `background` is a diagnostic;
# `interrupts` counts exits, not time (`--runs` interrupts per stage and mode);
# `scale` sweeps replicas on a simulated cluster (~15 minutes).
NAMED_ONLY = ("peer_trl", "peer_trl_100m", "peer_trl_100m_bf16", "background", "interrupts",
              "scale")


def table(results: dict[str, dict]) -> str:
    lines = ["| case | ratio (median) | goal | medians |", "|---|---|---|---|"]
    for case, r in results.items():
        lines.append(f"| {case} | {r['ratio']:.3f} | {r['goal']} | {r['detail']} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] in (["experiments"], ["learning"]):
        importlib.import_module(f"bench.{sys.argv[1]}").main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: all of {CASES})")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for <case>.json")
    ns = parser.parse_args()
    cases = ns.cases or list(CASES)
    for case in cases:
        if case not in CASES + NAMED_ONLY:
            parser.error(f"unknown case {case!r}; known: {', '.join(CASES + NAMED_ONLY)}")
    results = {}
    for case in cases:
        if len(cases) == 1:
            result = importlib.import_module(f"bench.{case}").run(runs=ns.runs)
            print(f"{case}: wrote {write_result(case, result, ns.out)}", flush=True)
        else:  # each case in a fresh process: no engine, thread or heap state carries over
            subprocess.run([sys.executable, "-m", "bench", case, "--runs", str(ns.runs),
                            "--out", str(ns.out)], check=True)
        results[case] = json.loads((ns.out / f"{case}.json").read_text())
    print(table(results))


if __name__ == "__main__":
    main()
