"""`python -m bench.profile CASE [--runs N] [--top K]`: run one bench case under py-spy
(sampling the bench process itself: in-process engines and the driver, not Ray actors) and
print the functions holding the most samples, inclusive, as shares of all samples.

The raw collapsed stacks are kept in bench/profiles/<case>.txt (and the profiled run's JSON
beside them, so bench/results/ keeps the full runs)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

PROFILES = Path(__file__).parent / "profiles"
_LINE = re.compile(r":\d+\)$")


def inclusive_shares(collapsed: str) -> tuple[Counter, int]:
    """Samples per function (counted once per stack it appears in) and the total."""
    shares: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        for frame in {_LINE.sub(")", f) for f in stack.split(";")}:
            shares[frame] += int(count)
    return shares, total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("case")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    ns = parser.parse_args()
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / f"{ns.case}.txt"
    subprocess.run(["py-spy", "record", "--format", "raw", "--rate", "50", "-o", str(out),
                    "--", sys.executable, "-m", "bench", ns.case, "--runs", str(ns.runs),
                    "--out", str(PROFILES)], check=True)
    shares, total = inclusive_shares(Path(out).read_text())
    print(f"{total} samples; top {ns.top} functions by inclusive share:")
    for frame, count in shares.most_common(ns.top):
        print(f"{count / total:7.1%}  {frame}")


if __name__ == "__main__":
    main()
