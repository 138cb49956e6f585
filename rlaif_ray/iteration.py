"""What one iteration leaves in the run's records: its `Rollout` (the generated and judged
data the update trains on) and its metrics row (one line of `run.dir/metrics.jsonl`; see
`rlaif_ray.metrics` for where rows go)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlaif_ray.judge.stats import JudgeStats, dimension_means, length_bias
from rlaif_ray.rollout.pool import SyncReport
from rlaif_ray.train.samples import rewarded_verdicts


@dataclass
class Rollout:
    """One iteration's generated and judged data."""

    iteration: int
    candidates: list[dict[str, Any]]
    stats: JudgeStats
    generate_s: float
    judge_s: float
    judges_tripped: list[str]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def metrics_row(rollout: Rollout, verdicts: list[dict[str, Any]], train: dict[str, Any],
                sync: SyncReport, trainer_restarts: int, judge_replicas: dict[str, int],
                scale_events: list[str], **seconds: float) -> dict[str, Any]:
    """One iteration's line of metrics.jsonl: its rollout and `verdicts` (rewards, judge
    statistics), the trainer's update metrics `train`, the weight `sync`, restarts,
    autoscaled judges' replicas and scaling events, and the stages' `seconds`."""
    rewarded = rewarded_verdicts(verdicts)
    rewards = [v["reward"] for v in rewarded]
    reward_mean, reward_std = _mean_std(rewards)
    length = {c["response_id"]: len(c["response"]) for c in rollout.candidates}
    versions = [c["policy_version"] for c in rollout.candidates]
    summary = rollout.stats.as_dict()
    return {
        "iteration": rollout.iteration,
        "policy_version": min(versions) if versions else None,
        "policy_lag_max": max((rollout.iteration - v for v in versions), default=0),
        "reward_mean": reward_mean,
        "reward_std": reward_std,
        "dimension_scores": dimension_means(rewarded),
        "kl": train.get("kl"),
        "policy_loss": train.get("policy_loss"),
        "value_loss": train.get("value_loss"),
        "entropy": train.get("entropy"),
        "clip_fraction": train.get("clip_fraction"),
        "policy_kl": train.get("policy_kl"),
        "ppo_epochs_run": train.get("epochs"),
        "epoch_policy_kl": train.get("epoch_policy_kl"),
        "epoch_clip_fraction": train.get("epoch_clip_fraction"),
        "generator_old_logprobs": train.get("generator_old_logprobs"),
        "is_weight_mean": train.get("is_weight_mean"),
        "logprob_gap": train.get("logprob_gap"),
        "train_samples": int(train.get("samples", 0)),
        "update_s": train.get("update_s"),
        "checkpoint_s": train.get("checkpoint_s"),
        "kept_fraction": summary["kept_fraction"],
        "position_bias": summary["position_bias"],
        "length_bias": length_bias([length[v["response_id"]] for v in rewarded], rewards),
        "abstention_rate": summary["abstention_rate"],
        "inter_judge_agreement": summary["inter_judge_agreement"],
        "tokens_generated": sum(len(c["response_token_ids"]) for c in rollout.candidates),
        "judge_votes": summary["judge_votes"],
        "generate_s": rollout.generate_s,
        "judge_s": rollout.judge_s,
        "judge_replicas": judge_replicas,
        "judge_scale_events": scale_events,
        "judges_tripped": rollout.judges_tripped,
        "sync_bytes": sync.bytes,
        "sync_probe_gap": sync.max_probe_gap,
        "sync_group": sync.group,
        "trainer_restarts": trainer_restarts,
        **seconds,
    }
