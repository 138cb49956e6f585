"""`python -m bench [CASE ...]`: run benchmark cases, write bench/results/<case>.json, print
a markdown table of medians and ratios."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bench.common import RESULTS, write_result

CASES = ("rollout_overhead", "judge", "weight_sync", "ppo_step", "iteration")


def table(results: dict[str, dict]) -> str:
    lines = ["| case | ratio (median) | goal | medians |", "|---|---|---|---|"]
    for case, r in results.items():
        lines.append(f"| {case} | {r['ratio']:.3f} | {r['goal']} | {r['detail']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: all of {CASES})")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for <case>.json")
    ns = parser.parse_args()
    results = {}
    for case in ns.cases or CASES:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; known: {', '.join(CASES)}")
        results[case] = importlib.import_module(f"bench.{case}").run(runs=ns.runs)
        print(f"{case}: wrote {write_result(case, results[case], ns.out)}", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
