"""What one iteration leaves in the run's records: its `Rollout` (the generated and judged
data the update trains on) and its metrics row (one line of `run.dir/metrics.jsonl`; see
`rlaif_ray.metrics` for where rows go)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rlaif_ray.data.records import Candidate, Verdict, delete_iteration, run_iterations
from rlaif_ray.judge.cost import cost_per, priced
from rlaif_ray.judge.stats import JudgeStats, dimension_means, length_bias
from rlaif_ray.metrics import read_metrics, write_metrics
from rlaif_ray.review.live import NO_HUMANS, HumanUse
from rlaif_ray.rollout.pool import SyncReport
from rlaif_ray.storage import StoragePath
from rlaif_ray.train.checkpoints import discard_after
from rlaif_ray.train.samples import rewarded_verdicts


@dataclass
class Rollout:
    """One iteration's generated and judged data."""

    iteration: int
    candidates: list[Candidate]
    stats: JudgeStats
    generate_s: float
    judge_s: float
    judges_tripped: list[str]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


@dataclass
class IterationMetrics:
    """One iteration's line of `run.dir/metrics.jsonl` (README's outputs table), as written:
    `as_row()` is the JSON object."""

    iteration: int
    policy_version: int | None  # the oldest policy version that answered
    policy_lag_max: int  # iterations between it and the newest (async: at most 1)
    reward_mean: float | None  # over the answers with a standing verdict
    reward_std: float | None
    dimension_scores: dict[str, float]  # the rubric's dimensions, mean over those answers
    kl: float | None  # to the reference, per token (the trainer's estimator)
    policy_loss: float | None
    value_loss: float | None  # None without a critic
    entropy: float | None
    clip_fraction: float | None
    policy_kl: float | None  # the policy's change in the update's last epoch (k3)
    ppo_epochs_run: int | None  # fewer than trainer.ppo_epochs after a target_kl stop
    epoch_policy_kl: list[float] | None
    epoch_clip_fraction: list[float] | None
    generator_old_logprobs: float | None  # share of old log-probs taken from the generators
    is_weight_mean: float | None  # truncated importance weights of older answers
    logprob_gap: float | None  # trainer vs generators on the sampled tokens, before the update
    train_samples: int
    human_verdicts: int  # people's verdicts the update used (live review: earlier items too)
    human_lag: float | None  # their mean lag, iterations from the item's to the update's
    # Live review: each judge's share of agreement with people so far (None: none yet).
    judge_human_agreement: dict[str, float] | None
    update_s: float | None
    checkpoint_s: float | None
    kept_fraction: float | None
    position_bias: float | None  # pairwise: share of votes for the first slot (0.5: none)
    length_bias: float | None  # correlation of answer length and reward
    abstention_rate: dict[str, float | None]
    inter_judge_agreement: float | None
    tokens_generated: int
    judge_votes: int
    # Per judge: votes, prompt_tokens, completion_tokens and cost (at judges[].price_per_mtok;
    # None unpriced); and the priced judges' cost per verdict that stands.
    judge_usage: dict[str, dict[str, Any]]
    verdicts_kept: int
    cost_per_kept_verdict: float | None
    generate_s: float
    judge_s: float
    judge_replicas: dict[str, int]  # autoscaled judges' replicas now
    judge_scale_events: list[str]  # since the last iteration
    judges_tripped: list[str]  # judges whose circuit breaker left them out
    sync_bytes: int
    sync_probe_gap: float | None
    sync_group: str | None  # the broadcast group (collective transport)
    trainer_restarts: int
    train_s: float
    sync_s: float
    iteration_s: float

    def as_row(self) -> dict[str, Any]:
        """The metrics.jsonl object."""
        return asdict(self)


def iteration_metrics(rollout: Rollout, verdicts: list[Verdict], train: dict[str, Any],
                      sync: SyncReport, trainer_restarts: int, judge_replicas: dict[str, int],
                      scale_events: list[str], train_s: float, sync_s: float,
                      iteration_s: float, prices: dict[str, dict[str, float] | None],
                      humans: HumanUse = NO_HUMANS) -> IterationMetrics:
    """One iteration's metrics: its rollout and `verdicts` (rewards, judge statistics), the
    trainer's update metrics `train`, the weight `sync`, restarts, autoscaled judges'
    replicas and scaling events, the stages' seconds, the judges' `prices`, and the
    people's verdicts the update used."""
    rewarded = rewarded_verdicts(verdicts)
    rewards = [float(v.reward or 0.0) for v in rewarded]
    reward_mean, reward_std = _mean_std(rewards)
    length = {c.response_id: len(c.response) for c in rollout.candidates}
    versions = [c.policy_version for c in rollout.candidates]
    summary = rollout.stats.as_dict()
    usage = priced(summary["judge_usage"], prices)
    return IterationMetrics(
        iteration=rollout.iteration,
        policy_version=min(versions) if versions else None,
        policy_lag_max=max((rollout.iteration - v for v in versions), default=0),
        reward_mean=reward_mean,
        reward_std=reward_std,
        dimension_scores=dimension_means(rewarded),
        kl=train.get("kl"),
        policy_loss=train.get("policy_loss"),
        value_loss=train.get("value_loss"),
        entropy=train.get("entropy"),
        clip_fraction=train.get("clip_fraction"),
        policy_kl=train.get("policy_kl"),
        ppo_epochs_run=train.get("epochs"),
        epoch_policy_kl=train.get("epoch_policy_kl"),
        epoch_clip_fraction=train.get("epoch_clip_fraction"),
        generator_old_logprobs=train.get("generator_old_logprobs"),
        is_weight_mean=train.get("is_weight_mean"),
        logprob_gap=train.get("logprob_gap"),
        train_samples=int(train.get("samples", 0)),
        human_verdicts=humans.verdicts,
        human_lag=humans.lag,
        judge_human_agreement=humans.judge_agreement,
        update_s=train.get("update_s"),
        checkpoint_s=train.get("checkpoint_s"),
        kept_fraction=summary["kept_fraction"],
        position_bias=summary["position_bias"],
        length_bias=length_bias([length[v.response_id] for v in rewarded], rewards),
        abstention_rate=summary["abstention_rate"],
        inter_judge_agreement=summary["inter_judge_agreement"],
        tokens_generated=sum(len(c.response_token_ids) for c in rollout.candidates),
        judge_votes=summary["judge_votes"],
        judge_usage=usage,
        verdicts_kept=summary["kept"],
        cost_per_kept_verdict=cost_per(usage, summary["kept"]),
        generate_s=rollout.generate_s,
        judge_s=rollout.judge_s,
        judge_replicas=judge_replicas,
        judge_scale_events=scale_events,
        judges_tripped=rollout.judges_tripped,
        sync_bytes=sync.bytes,
        sync_probe_gap=sync.max_probe_gap,
        sync_group=sync.group,
        trainer_restarts=trainer_restarts,
        train_s=train_s,
        sync_s=sync_s,
        iteration_s=iteration_s,
    )


def discard_from(run_dir: StoragePath, start: int) -> None:
    """Drop what iterations from `start` on left behind (a resume runs them again): their
    data, metrics lines and checkpoints."""
    for iteration in run_iterations(run_dir):
        if iteration >= start:
            delete_iteration(run_dir, iteration)
    kept = {r["iteration"]: r for r in reversed(read_metrics(run_dir)) if r["iteration"] < start}
    write_metrics(run_dir, [kept[k] for k in sorted(kept)])
    discard_after(run_dir, start - 1)
