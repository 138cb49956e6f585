"""The Ray Train worker loop: DeepSpeed PPO on each iteration's batch, then the new policy
weights (gathered on rank 0) go back to the driver for the generators.

Each worker holds a DeepSpeed engine for the actor (policy) and the critic, and the frozen
reference. Batches arrive by iteration number from the exchange actor, so a worker restored
from a checkpoint replays exactly the iteration it lost."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from rlaif_ray.storage import StoragePath
from rlaif_ray.train.advantages import Estimator, estimator, group_advantages, returns_to_go
from rlaif_ray.train.checkpoints import (
    POLICY_FILE,
    checkpoint_due,
    fit_checkpoints,
    read_iteration,
    write_state,
)
from rlaif_ray.train.ppo import (
    entropy_from_logits,
    gae,
    kl_estimate,
    masked_mean,
    policy_loss,
    shaped_rewards,
    token_logprobs,
    value_loss,
)
from rlaif_ray.train.samples import Batch, collate

logger = logging.getLogger(__name__)


@dataclass
class Rollout:
    """A micro batch with what PPO needs from before the update (values and returns: the
    critic's, for `gae` only)."""

    batch: Batch
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    advantages: torch.Tensor
    values: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def sequence_logprobs(model, batch: Batch, temperature: float) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """(log-probs of tokens 1..T-1, logits / temperature) under a causal LM."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits = logits[:, :-1].float() / max(temperature, 1e-6)
    return token_logprobs(logits, batch.input_ids[:, 1:]), logits


def _all_mean(values: dict[str, float], world: int) -> dict[str, float]:
    import torch.distributed as dist

    tensor = torch.tensor(list(values.values()), dtype=torch.float64)
    if world > 1:
        dist.all_reduce(tensor)
        tensor /= world
    return dict(zip(values, tensor.tolist(), strict=True))


def _global_whiten(rollouts: list[Rollout], world: int) -> None:
    """Whiten advantages with the mean/std over every rank's response tokens."""
    import torch.distributed as dist

    stats = torch.zeros(3, dtype=torch.float64)
    for r in rollouts:
        stats += torch.stack([r.batch.mask.sum(), (r.advantages * r.batch.mask).sum(),
                              (r.advantages ** 2 * r.batch.mask).sum()]).double().cpu()
    if world > 1:
        dist.all_reduce(stats)
    count = stats[0].clamp(min=1)
    mean = stats[1] / count
    std = (stats[2] / count - mean ** 2).clamp(min=1e-8).sqrt()
    for r in rollouts:
        r.advantages = ((r.advantages - mean.float()) / std.float()) * r.batch.mask


@torch.no_grad()
def make_rollouts(actor, critic, ref, batches: list[Batch], tr: dict[str, Any],
                  temperature: float, method: Estimator) -> list[Rollout]:
    """Old and reference log-probs and the advantages of `method` per micro batch (see
    `rlaif_ray.train.advantages`)."""
    rollouts = []
    for b in batches:
        old_logp, _ = sequence_logprobs(actor, b, temperature)
        ref_logp, _ = sequence_logprobs(ref, b, temperature)
        if method.group_baseline:
            rollouts.append(Rollout(b, old_logp, ref_logp, b.advantages.unsqueeze(-1) * b.mask))
            continue
        kl = kl_estimate(old_logp, ref_logp, tr["kl_estimator"])
        rewards = shaped_rewards(kl, b.rewards, b.mask, tr["kl_coef"])
        if not method.needs_critic:  # reinforce_pp
            rollouts.append(Rollout(b, old_logp, ref_logp, returns_to_go(rewards, b.mask)))
            continue
        values = critic(b.input_ids, b.attention_mask)[:, :-1] * b.mask
        advantages, returns = gae(rewards, values, b.mask, tr["gamma"], tr["lam"])
        rollouts.append(Rollout(b, old_logp, ref_logp, advantages, values, returns))
    return rollouts


def ppo_iteration(actor, critic, ref, samples: list[dict[str, Any]], tr: dict[str, Any],
                  rank: int, world: int, device: torch.device, pad_id: int,
                  temperature: float) -> dict[str, float]:
    """One PPO update on this rank's share of `samples`; metrics averaged over ranks.
    Every rank gets the same number of samples (a remainder below the world size is left
    out) so collective ops stay in step."""
    method = estimator(tr["advantage_estimator"])
    if method.group_baseline:  # over every rank's samples: a group may span ranks
        scalars = group_advantages(method.name, [s["reward"] for s in samples],
                                   [s["prompt_id"] for s in samples], tr["grpo_normalize_std"])
        samples = [{**s, "advantage": a} for s, a in zip(samples, scalars, strict=True)]
    usable = (len(samples) // world) * world
    mine = samples[rank:usable:world]
    micro = tr["micro_batch_size"]
    batches = [collate(mine[i:i + micro], pad_id).to(device) for i in range(0, len(mine), micro)]
    if not batches:
        return {"samples": 0.0}
    rollouts = make_rollouts(actor, critic, ref, batches, tr, temperature, method)
    if method.always_whiten or (tr["whiten_advantages"] and not method.group_baseline):
        _global_whiten(rollouts, world)
    sums: dict[str, float] = {}
    steps = 0
    for _ in range(tr["ppo_epochs"]):
        for r in rollouts:
            mask = r.batch.mask
            logp, logits = sequence_logprobs(actor, r.batch, temperature)
            pg_loss, clip_fraction = policy_loss(logp, r.old_logp, r.advantages, mask,
                                                 tr["clip_eps"])
            entropy = masked_mean(entropy_from_logits(logits), mask)
            loss = pg_loss - tr["entropy_coef"] * entropy
            if not method.kl_in_reward:  # grpo, rloo: the KL to the reference as a loss
                loss = loss + tr["kl_coef"] * masked_mean(
                    kl_estimate(logp, r.ref_logp, tr["kl_estimator"]), mask)
            actor.backward(loss)
            actor.step()
            losses = {"policy_loss": pg_loss, "clip_fraction": clip_fraction,
                      "entropy": entropy}
            if critic is not None:
                values = critic(r.batch.input_ids, r.batch.attention_mask)[:, :-1]
                losses["value_loss"] = value_loss(values, r.values, r.returns, mask,
                                                  tr["value_clip"])
                critic.backward(losses["value_loss"])
                critic.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            steps += 1
    tokens = sum(r.batch.mask.sum() for r in rollouts)
    local = {k: v / steps for k, v in sums.items()}
    local.update(
        kl=float(sum(((r.old_logp - r.ref_logp) * r.batch.mask).sum() for r in rollouts)
                 / tokens),
        logprob_gap=float(sum(((r.old_logp - r.batch.gen_logprobs).abs() * r.batch.mask).sum()
                              for r in rollouts) / tokens),
        reward_mean=float(torch.cat([r.batch.rewards for r in rollouts]).mean()),
        samples=float(len(mine)),
    )
    metrics = _all_mean(local, world)
    metrics["samples"] *= world
    return metrics


@torch.no_grad()
def probe_logprobs(actor, token_ids: list[int], device: torch.device) -> list[float]:
    """The new policy's log-probs on the sync probe (all ranks call: ZeRO-3 gathers)."""
    ids = torch.tensor([token_ids], device=device)
    logits = actor(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
    return token_logprobs(logits[:, :-1], ids[:, 1:])[0].tolist()


def _save_checkpoint(actor, critic, iteration: int, rank: int,
                     policy: dict[str, torch.Tensor] | None, fit: str) -> str:
    """DeepSpeed states of actor and critic in a new local directory, plus (rank 0) the
    full policy weights (what the generators serve after a driver restart) and, last, the
    run state that marks the checkpoint complete. Ray Train deletes the directory once it
    has persisted it (see the report)."""
    from safetensors.torch import save_file

    path = tempfile.mkdtemp(prefix=f"rlaif-ckpt-{fit}-{iteration}-")
    actor.save_checkpoint(path, tag="actor")
    if critic is not None:
        critic.save_checkpoint(path, tag="critic")
    if rank == 0:
        save_file({k: v.contiguous() for k, v in policy.items()},
                  os.path.join(path, POLICY_FILE), metadata={"format": "pt"})
        write_state(path, iteration)
    return path


def _restore(actor, critic, resume: dict[str, Any] | None, fit_dir: str) -> int:
    """Load the newest complete checkpoint this fit has persisted (a worker restarted after
    a failure), else the driver's resume point `resume` ({path, iteration}); returns the
    first iteration to run. The fit's directory is read, not Ray Train's record of it: a
    worker killed right after a report can leave a persisted checkpoint the controller has
    not registered yet."""
    persisted = fit_checkpoints(fit_dir)
    if persisted:
        return _load(actor, critic, str(persisted[-1].path))
    return _load(actor, critic, resume["path"]) if resume is not None else 0


def _load(actor, critic, path: str) -> int:
    """Load the checkpoint at `path` (local, or downloaded from its URI first)."""
    with StoragePath.of(path).local_copy() as local:
        actor.load_checkpoint(str(local), tag="actor")
        if critic is not None:
            critic.load_checkpoint(str(local), tag="critic")
        return read_iteration(local) + 1


def _publish_policy(exchange, config: dict[str, Any], version: int, update: dict[str, Any],
                    state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Rank 0 hands policy `version` to the driver: as one object-store payload the
    generators read zero-copy, or by collective broadcast to the group the driver forms
    (the payload is then put after a broadcast that went through, only for restarted
    generators to catch up from; the exchange hands it to the policy store once the driver
    has verified the sync). The payload is owned by the policy store actor, so it outlives
    this process."""
    import ray

    from rlaif_ray.sync.collective import free_port, layout_of, open_group, send
    from rlaif_ray.sync.payload import to_payload

    store = ray.get_actor(config["policy_store"], namespace=config["namespace"])
    if config["sync_transport"] != "collective":
        update["payload"] = ray.get(store.hold.remote(to_payload(state)))
        ray.get(exchange.put_update.remote(version, update))
        return
    update["layout"] = layout_of(state)
    update["sender"] = {"host": ray.util.get_node_ip_address(), "port": free_port(),
                        "pid": os.getpid()}
    ray.get(exchange.put_update.remote(version, update))
    group = ray.get(exchange.broadcast_group.remote(version))
    if group is None:  # a replay after a restore: the generators serve this version already
        return
    try:
        send(open_group(group, 0), state, config["sync_bucket_bytes"], device)
    except Exception as err:  # the receivers fail too: the driver reports it and forms anew
        logger.error("broadcast of policy version %d to %s failed: %r", version, group.name,
                     err)
        return  # nothing for restarted generators to catch up to
    # For restarted generators to catch up from, once the driver has verified the sync.
    exchange.put_payload.remote(version, ray.get(store.hold.remote(to_payload(state))))


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point (see `rlaif_ray.train.trainer.build_trainer` for `config`)."""
    import deepspeed
    import ray
    import ray.train
    import ray.train.torch
    from transformers import AutoModelForCausalLM

    from rlaif_ray.train.critic import ValueModel
    from rlaif_ray.train.deepspeed_engines import frozen, initialize
    from rlaif_ray.train.store import STORE_NAME

    torch.set_num_threads(1)
    tr = config["trainer"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    deepspeed.init_distributed(dist_backend="nccl" if tr["use_gpu"] else "gloo")
    device = ray.train.torch.get_device()
    torch.manual_seed(config["seed"])
    dtype = torch.bfloat16 if tr["dtype"] == "bfloat16" else torch.float32
    path = config["model_path"]
    actor = initialize(AutoModelForCausalLM.from_pretrained(path, dtype=dtype), tr,
                       tr["actor_lr"], world)
    critic = (initialize(ValueModel(path, dtype), tr, tr["critic_lr"], world)
              if estimator(tr["advantage_estimator"]).needs_critic else None)
    ref = frozen(AutoModelForCausalLM.from_pretrained(path, dtype=dtype), tr, world)
    if isinstance(ref, torch.nn.Module) and not hasattr(ref, "global_rank"):
        ref.to(device)
    try:
        exchange = ray.get_actor(STORE_NAME, namespace=config["namespace"])
    except ValueError:  # the driver already ended the run
        return
    first = _restore(actor, critic, config.get("resume"), config["fit_dir"])
    try:
        _train(config, exchange, first, actor, critic, ref, rank, world, device)
    except ray.exceptions.RayActorError as err:
        if err.actor_id != exchange._actor_id.hex():
            raise
        # The driver removed the exchange: it stopped the run (an error, Ctrl-C). End this
        # fit quietly instead of failing it into Ray Train's retries.
        logger.info("the driver ended the run; rank %d stops", rank)


def _train(config: dict[str, Any], exchange, first: int, actor, critic, ref, rank: int,
           world: int, device) -> None:
    """Iterations `first`.. of PPO: take the driver's batch, train, publish the policy,
    checkpoint and report."""
    import ray
    import ray.train

    from rlaif_ray.sync.digest import state_digests
    from rlaif_ray.sync.probe import SyncProbe
    from rlaif_ray.train.deepspeed_engines import full_state_dict

    tr = config["trainer"]
    ray.get(exchange.register_worker.remote(rank, os.getpid(), first))
    for iteration in range(first, config["iterations"]):
        samples = ray.get(exchange.get_batch.remote(iteration, rank))
        metrics = ppo_iteration(actor, critic, ref, samples, tr, rank, world, device,
                                config["pad_id"], config["temperature"])
        state = full_state_dict(actor, tr["zero_stage"])
        probe = probe_logprobs(actor, config["probe_token_ids"], device)
        due = checkpoint_due(iteration, tr["checkpoint_every"], config["iterations"])
        checkpoint_dir = (_save_checkpoint(actor, critic, iteration, rank, state,
                                           os.path.basename(config["fit_dir"]))
                          if due else None)
        if rank == 0:
            update = {"bytes": sum(t.numel() * t.element_size() for t in state.values()),
                      "metrics": metrics,
                      "probe": SyncProbe(config["probe_token_ids"], probe,
                                         config["probe_tolerance"], state_digests(state))}
            _publish_policy(exchange, config, iteration + 1, update, state, device)
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if due else None
        ray.train.report({**metrics, "iteration": iteration}, checkpoint=checkpoint,
                         delete_local_checkpoint_after_upload=True)
        if due and rank == 0:
            ray.get(exchange.checkpointed.remote(iteration))
