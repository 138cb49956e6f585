"""Judges measured against people: on the items a person judged, each judge's agreement
with them per rubric dimension (Spearman's rank correlation of scores, Cohen's kappa of
binned scores or of pairwise winners) and its bias (mean score minus the person's, or how
much more often it picks the first answer shown)."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from rlaif_ray.data.records import read_parts, run_iterations, table_dir
from rlaif_ray.review.agreement import agrees
from rlaif_ray.review.forms import OVERALL, ReviewForm, item_form
from rlaif_ray.review.queue import split_sources
from rlaif_ray.storage import Location, StoragePath

Collected = dict[str, dict[str, list[tuple[Any, Any]]]]


def _judge_views(form: ReviewForm, votes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per judge, its valid votes on one item reduced to the form's view of them."""
    by_judge: dict[str, list[dict[str, Any]]] = {}
    for vote in votes:
        if vote["parse_status"] == "ok":
            by_judge.setdefault(vote["judge"], []).append(vote)
    return {judge: form.judge_view(mine) for judge, mine in by_judge.items()}


def _collect(run_dir: StoragePath) -> tuple[Collected, dict[str, ReviewForm],
                                            dict[str, list[float]]]:
    """Per judge and key, (the judge's view, the person's) over the items people judged;
    per judge, the form of those items; and per judge, its first-slot share on each
    (pairwise)."""
    collected: Collected = {}
    forms: dict[str, ReviewForm] = {}
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
            form = item_form(row["item_kind"])
            person = form.person_view(row)
            for judge, view in _judge_views(form, votes.get(item_id, [])).items():
                forms[judge] = form
                for key in person.keys() & view.keys():
                    collected.setdefault(judge, {}).setdefault(key, []).append(
                        (view[key], person[key]))
                if "first_slot" in view:
                    first_slots.setdefault(judge, []).append(view["first_slot"])
    return collected, forms, first_slots


def calibrate(run_dir: Location) -> dict[str, dict[str, dict[str, Any]]]:
    """judge -> dimension (and `overall`) -> agreement with people on the items they
    judged: items, agreement (the share agreeing: `agrees`), Cohen's kappa and bias;
    pointwise also Spearman's rho and bias on the 1-10 scale; pairwise bias is the
    first-slot share - 0.5."""
    collected, forms, first_slots = _collect(StoragePath.of(run_dir))
    return {judge: {key: forms[judge].stats(pairs, first_slots.get(judge, []))
                    for key, pairs in sorted(keys.items())}
            for judge, keys in sorted(collected.items())}


def overall_agreement(run_dir: Location) -> dict[str, float] | None:
    """Each judge's share of agreement (`agrees`) with people on the items they judged,
    overall; None before any person's verdict."""
    collected, _, _ = _collect(StoragePath.of(run_dir))
    shares = {judge: fmean(agrees(j, h) for j, h in keys[OVERALL])
              for judge, keys in sorted(collected.items()) if keys.get(OVERALL)}
    return shares or None


def calibrated_weights(run_dir: Location, weights: dict[str, float], prior: float,
                       prior_items: int) -> dict[str, float]:
    """Each judge's weight times its agreement with people on the items they judged
    (overall), shrunk towards `prior` as if `prior_items` items had agreed at that rate:
    before any person's verdict every judge keeps its weight times the prior."""
    collected, _, _ = _collect(StoragePath.of(run_dir))
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
