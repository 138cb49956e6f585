"""Judges measured against people: on the items a person judged, each judge's agreement
with them per rubric dimension (Spearman's rank correlation of scores, Cohen's kappa of
binned scores or of pairwise winners) and its bias (mean score minus the person's, or how
much more often it picks the first answer shown)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from rlaif_ray.data.records import read_parts, run_iterations, table_dir
from rlaif_ray.judge.modes import SCORE_MAX, SCORE_MIN
from rlaif_ray.judge.stats import mean_by_dimension
from rlaif_ray.review.queue import split_sources
from rlaif_ray.storage import Location, StoragePath

OVERALL = "overall"
# Scores binned for kappa: low 1-3, middle 4-7, high 8-10 (the rubric's 1-10 scale).
SCORE_BINS = ((1, 3), (4, 7), (8, 10))


def score_bin(score: float) -> int:
    """The bin (0, 1, 2) of a 1-10 score; a mean between bins goes to the nearer."""
    rounded = min(max(round(score), SCORE_MIN), SCORE_MAX)
    return next(i for i, (low, high) in enumerate(SCORE_BINS) if low <= rounded <= high)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters' labels: (observed - chance agreement) / (1 - chance);
    None with no items, 1.0 when both always give the one same label."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    if not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if chance == 1.0:
        return 1.0
    return (observed - chance) / (1.0 - chance)


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); None with fewer than
    two items or when either side is constant."""
    if len(a) != len(b):
        raise ValueError("both raters must score the same items")
    if len(a) < 2:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = fmean(ra), fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var_a, var_b = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    if var_a == 0 or var_b == 0:
        return None
    return cov / (var_a * var_b) ** 0.5


def _judge_views(votes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per judge, its valid votes on one item reduced to one view: mean score per dimension
    and overall (1-10 scale), or the most frequent winner and first-slot share."""
    by_judge: dict[str, list[dict[str, Any]]] = {}
    for vote in votes:
        if vote["parse_status"] == "ok":
            by_judge.setdefault(vote["judge"], []).append(vote)
    views = {}
    for judge, mine in by_judge.items():
        if mine[0]["kind"] == "pointwise":
            view = mean_by_dimension(vote["scores"] or {} for vote in mine)
            view[OVERALL] = SCORE_MIN + fmean(v["overall"] for v in mine) * (SCORE_MAX -
                                                                             SCORE_MIN)
        else:
            view = {OVERALL: Counter(v["winner"] for v in mine).most_common(1)[0][0],
                    "first_slot": fmean(bool(v["first_slot"]) for v in mine)}
        views[judge] = view
    return views


def _human_view(row: dict[str, Any]) -> dict[str, Any]:
    if row["item_kind"] == "pair":
        return {OVERALL: row["winner"]}
    view = dict(row["dimension_scores"] or {})
    view[OVERALL] = SCORE_MIN + row["score"] * (SCORE_MAX - SCORE_MIN)
    return view


MIDPOINT = (SCORE_MIN + SCORE_MAX) / 2


def agrees(judge: Any, person: Any) -> bool:
    """Whether a judge's view of an item agrees with a person's: the same winner
    (pairwise), or a score on the same side of the scale's midpoint (pointwise)."""
    if isinstance(person, str):
        return bool(judge == person)
    return (judge > MIDPOINT) == (person > MIDPOINT)


def _pointwise_stats(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    judge, human = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"items": len(pairs), "agreement": fmean(agrees(j, h) for j, h in pairs),
            "spearman": spearman(judge, human),
            "kappa": cohen_kappa([score_bin(s) for s in judge], [score_bin(s) for s in human]),
            "bias": fmean(j - h for j, h in pairs)}


def _pairwise_stats(pairs: list[tuple[str, str]], first_slot: list[float]) -> dict[str, Any]:
    judge, human = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"items": len(pairs), "agreement": fmean(agrees(j, h) for j, h in pairs),
            "kappa": cohen_kappa(judge, human),
            "bias": fmean(first_slot) - 0.5}  # > 0: picks the answer shown first more


Collected = dict[str, dict[str, list[tuple[Any, Any]]]]


def _collect(run_dir: StoragePath) -> tuple[Collected, dict[str, list[float]]]:
    """Per judge and key, (the judge's view, the person's) over the items people judged;
    and per pairwise judge, its first-slot share on each."""
    collected: Collected = {}
    first_slots: dict[str, list[float]] = {}
    for iteration in run_iterations(run_dir):
        _, humans = split_sources(read_parts(table_dir(run_dir, "verdicts", iteration)))
        if not humans:
            continue
        votes: dict[str, list[dict[str, Any]]] = {}
        for vote in read_parts(table_dir(run_dir, "votes", iteration)):
            if vote["item_id"] in humans:
                votes.setdefault(vote["item_id"], []).append(vote)
        for item_id, row in humans.items():
            person = _human_view(row)
            for judge, view in _judge_views(votes.get(item_id, [])).items():
                for key in person.keys() & view.keys():
                    collected.setdefault(judge, {}).setdefault(key, []).append(
                        (view[key], person[key]))
                if "first_slot" in view:
                    first_slots.setdefault(judge, []).append(view["first_slot"])
    return collected, first_slots


def calibrate(run_dir: Location) -> dict[str, dict[str, dict[str, Any]]]:
    """judge -> dimension (and `overall`) -> agreement with people on the items they
    judged: items, agreement (the share agreeing: `agrees`), Cohen's kappa and bias;
    pointwise also Spearman's rho and bias on the 1-10 scale; pairwise bias is the
    first-slot share - 0.5."""
    collected, first_slots = _collect(StoragePath.of(run_dir))
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for judge, keys in sorted(collected.items()):
        report[judge] = {
            key: (_pairwise_stats(pairs, first_slots[judge]) if judge in first_slots
                  else _pointwise_stats(pairs))
            for key, pairs in sorted(keys.items())}
    return report


def overall_agreement(run_dir: Location) -> dict[str, float] | None:
    """Each judge's share of agreement (`agrees`) with people on the items they judged,
    overall; None before any person's verdict."""
    collected, _ = _collect(StoragePath.of(run_dir))
    shares = {judge: fmean(agrees(j, h) for j, h in keys[OVERALL])
              for judge, keys in sorted(collected.items()) if keys.get(OVERALL)}
    return shares or None


def calibrated_weights(run_dir: Location, weights: dict[str, float], prior: float,
                       prior_items: int) -> dict[str, float]:
    """Each judge's weight times its agreement with people on the items they judged
    (overall), shrunk towards `prior` as if `prior_items` items had agreed at that rate:
    before any person's verdict every judge keeps its weight times the prior."""
    collected, _ = _collect(StoragePath.of(run_dir))
    out = {}
    for judge, weight in weights.items():
        pairs = collected.get(judge, {}).get(OVERALL, [])
        agreed = sum(agrees(j, h) for j, h in pairs)
        out[judge] = weight * (prior * prior_items + agreed) / (prior_items + len(pairs))
    return out


def calibration_lines(report: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The report as lines of at most 80 columns."""
    if not report:
        return ["no item has both a person's verdict and a judge's valid vote yet"]

    def num(value: float | None) -> str:
        return "   -" if value is None else f"{value:+.2f}"

    lines = [f"{'judge':<16} {'dimension':<22} {'items':>5} {'agree':>6} {'rho':>6} "
             f"{'kappa':>6} {'bias':>6}"]
    for judge, keys in report.items():
        for key, stats in keys.items():
            lines.append(f"{judge[:16]:<16} {key[:22]:<22} {stats['items']:>5} "
                         f"{stats['agreement']:>6.2f} {num(stats.get('spearman')):>6} "
                         f"{num(stats['kappa']):>6} {num(stats['bias']):>6}")
    lines.append("agree: share agreeing; rho: Spearman's (pointwise); kappa: Cohen's")
    return lines
