"""Live review (`review.mode: live`): people's verdicts reach the next update.

Each update takes, beside its own iteration's samples, the answers of earlier iterations
that a person judged since the previous update took its samples (`since` < reviewed_at <=
`until`). They train with the person's reward at full confidence; their log-probs are the
older policy's, so the trainer's truncated importance weights treat them as the
off-policy answers they are. An item still waiting for a person is held out of training
(its judges did not stand), as in offline review."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from omegaconf import DictConfig

from rlaif_ray.data.records import ItemKind, Verdict, read_candidates, read_parts, table_dir
from rlaif_ray.judge.modes import rubric_mode
from rlaif_ray.review.calibration import overall_agreement
from rlaif_ray.review.queue import (
    HUMAN_SOURCE,
    export_review,
    judged_kind,
    merged_verdicts,
    queue_path,
    split_sources,
)
from rlaif_ray.storage import Location, StoragePath
from rlaif_ray.train.samples import TrainingSample, training_samples

REVIEW_MODES = ("offline", "live")


@dataclass(frozen=True)
class HumanUse:
    """The people's verdicts one update used: extra samples from earlier iterations, the
    count and mean lag (iterations from the item's to the update's) of all of them, and
    (live review) each judge's agreement with people so far."""

    samples: list[TrainingSample]
    verdicts: int
    lag: float | None
    judge_agreement: dict[str, float] | None = None


NO_HUMANS = HumanUse([], 0, None)


def own_humans(verdicts: list[Verdict], mode: str) -> int:
    """The people's verdicts among an iteration's merged verdicts (judged items only)."""
    kind = judged_kind(mode)
    return sum(v.source == HUMAN_SOURCE and v.item_kind == kind for v in verdicts)


def _reviewed_between(rows: list[dict[str, Any]], since: float, until: float) -> set[str]:
    _, humans = split_sources(rows)
    return {item for item, row in humans.items() if since < (row["reviewed_at"] or 0.0) <= until}


def late_humans(run_dir: Location, iteration: int, own: int, since: float, until: float,
                mode: str, pairwise_reward: str, length_penalty: float) -> HumanUse:
    """The people's verdicts update `iteration` uses: `own` on its own items (lag 0) and
    those on earlier iterations' items written in (`since`, `until`], as samples."""
    run_dir = StoragePath.of(run_dir)
    samples: list[TrainingSample] = []
    lags = [0] * own
    for earlier in range(iteration):
        reviewed = _reviewed_between(read_parts(table_dir(run_dir, "verdicts", earlier)),
                                     since, until)
        if not reviewed:
            continue
        merged = merged_verdicts(run_dir, earlier, mode, pairwise_reward)
        if rubric_mode(mode).relative_rewards:  # every answer of a reviewed prompt
            prompts = {v.prompt_id for v in merged if v.item_id in reviewed}
            chosen = [v for v in merged
                      if v.item_kind == ItemKind.RESPONSE and v.prompt_id in prompts]
        else:
            chosen = [v for v in merged if v.item_id in reviewed]
        samples += training_samples(read_candidates(run_dir, earlier), chosen, 0.0,
                                    length_penalty)
        lags += [iteration - earlier] * len(reviewed)
    return HumanUse(samples, len(lags), fmean(lags) if lags else None)


class Cutoffs:
    """When each update took its samples (`run.dir/review/live.json`): a resumed run's
    first update takes the people's verdicts written since the last committed one's."""

    def __init__(self, run_dir: Location) -> None:
        self.path = StoragePath.of(run_dir) / "review" / "live.json"
        self.taken: dict[str, float] = (json.loads(self.path.read_text())
                                        if self.path.is_file() else {})

    def since(self, iteration: int) -> float:
        """The cutoff of the update before `iteration` (0: none yet)."""
        return self.taken.get(str(iteration - 1), 0.0)

    def record(self, iteration: int, at: float) -> None:
        """Update `iteration` took its samples at `at`."""
        self.taken = {k: v for k, v in self.taken.items() if int(k) < iteration}
        self.taken[str(iteration)] = at
        self.path.write_text(json.dumps(self.taken))


class LiveReview:
    """A run's side of human review: the queue written after each rollout (live mode), and
    before each update the people's verdicts it takes (live mode: earlier iterations' too,
    and each judge's agreement with people so far)."""

    def __init__(self, run_dir: Location, cfg: DictConfig) -> None:
        self.run_dir = StoragePath.of(run_dir)
        self.live = cfg.review.mode == "live"
        self.mode = cfg.rubric.mode
        self.pairwise_reward = cfg.reward.pairwise
        self.length_penalty = cfg.reward.length_penalty
        self.cutoffs = Cutoffs(self.run_dir)

    def rolled_out(self) -> None:
        """An iteration's verdicts stand: in live mode, the queue is written now."""
        if self.live:
            export_review(self.run_dir, queue_path(self.run_dir), self.mode)

    def humans(self, iteration: int, verdicts: list[Verdict]) -> HumanUse:
        """The people's verdicts update `iteration` uses: on its own items (`verdicts`),
        and in live mode those on earlier items written since the previous update took its
        samples."""
        own = own_humans(verdicts, self.mode)
        if not self.live:
            return HumanUse([], own, 0.0 if own else None)
        until = time.time()
        humans = late_humans(self.run_dir, iteration, own, self.cutoffs.since(iteration),
                             until, self.mode, self.pairwise_reward, self.length_penalty)
        self.cutoffs.record(iteration, until)
        return dataclasses.replace(humans, judge_agreement=overall_agreement(self.run_dir))
