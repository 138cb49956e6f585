"""The Ray Train worker loop: DeepSpeed PPO on each iteration's batch, then the new policy
weights (gathered on rank 0) go back to the driver for the generators.

Each worker holds a DeepSpeed engine for the actor (policy; with `trainer.critic: shared`,
the policy with its value head) and, for gae's separate critic, the critic, and the frozen
reference. Batches arrive by iteration number from the exchange actor, so a worker restored
from a checkpoint replays exactly the iteration it lost."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from rlaif_ray.faults import trainer_kill_point
from rlaif_ray.lora import LoraSpec, write_adapter_config
from rlaif_ray.model_source import local_model_path
from rlaif_ray.storage import StoragePath
from rlaif_ray.sync.transports import Publication, transport
from rlaif_ray.train.advantages import critic_kind
from rlaif_ray.train.checkpoints import (
    POLICY_FILE,
    checkpoint_due,
    fit_checkpoints,
    read_iteration,
    write_probe,
    write_state,
)
from rlaif_ray.train.ppo import token_logprobs
from rlaif_ray.train.ppo_update import ppo_iteration
from rlaif_ray.train.settings import TrainerConfig
from rlaif_ray.train.worker_config import WorkerConfig
from rlaif_ray.waits import bounded_get

if TYPE_CHECKING:
    from rlaif_ray.sync.probe import SyncProbe

logger = logging.getLogger(__name__)


@torch.no_grad()
def probe_logprobs(actor, token_ids: list[int], device: torch.device) -> list[float]:
    """The new policy's log-probs on the sync probe (all ranks call: ZeRO-3 gathers)."""
    ids = torch.tensor([token_ids], device=device)
    logits = actor(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
    return token_logprobs(logits[:, :-1], ids[:, 1:])[0].tolist()


def _save_checkpoint(actor, critic, iteration: int,
                     policy: dict[str, torch.Tensor] | None, probe: SyncProbe | None,
                     fit: str, tr: TrainerConfig, base_model: str) -> str:
    """DeepSpeed states of actor and critic in a new local directory, plus (rank 0) the
    policy weights the generators serve after a driver restart (with LoRA, the adapter and
    its config for `base_model`) with their sync `probe` and, last, the run state that
    marks the checkpoint complete and names its critic and adapter rank. Ray Train deletes
    the directory once it has persisted it (see the report)."""
    from safetensors.torch import save_file

    path = tempfile.mkdtemp(prefix=f"rlaif-ckpt-{fit}-{iteration}-")
    actor.save_checkpoint(path, tag="actor")
    if critic is not None:
        critic.save_checkpoint(path, tag="critic")
    if policy is not None and probe is not None:  # rank 0
        save_file({k: v.contiguous() for k, v in policy.items()},
                  os.path.join(path, POLICY_FILE), metadata={"format": "pt"})
        lora = LoraSpec.from_section(tr.lora)
        if lora.enabled:  # the policy file is an adapter: its peft config beside it
            write_adapter_config(path, lora, base_model)
        write_probe(path, asdict(probe), tr.dtype)
        write_state(path, iteration, critic_kind(tr), lora.rank)
    return path


def _restore(actor, critic, resume_path: str | None, fit_dir: str) -> int:
    """Load the newest complete checkpoint this fit has persisted (a worker restarted after
    a failure), else the driver's resume point at `resume_path`; returns the
    first iteration to run. The fit's directory is read, not Ray Train's record of it: a
    worker killed right after a report can leave a persisted checkpoint the controller has
    not registered yet."""
    persisted = fit_checkpoints(fit_dir)
    if persisted:
        return _load(actor, critic, str(persisted[-1].path))
    return _load(actor, critic, resume_path) if resume_path is not None else 0


def _load(actor, critic, path: str) -> int:
    """Load the checkpoint at `path` (local, or downloaded from its URI first)."""
    with StoragePath.of(path).local_copy() as local:
        actor.load_checkpoint(str(local), tag="actor")
        if critic is not None:
            critic.load_checkpoint(str(local), tag="critic")
        return read_iteration(local) + 1


@dataclass(frozen=True)
class Tokens:
    """The policy tokenizer's ids a worker needs: padding, and the sync probe's prompt."""

    pad_id: int
    probe_ids: list[int]


def torch_threads(tr: TrainerConfig) -> int:
    """A worker's torch threads: `trainer.torch_threads`, else its CPU allocation
    (`trainer.resources.num_cpus`, at least 1)."""
    return tr.torch_threads or max(1, int(tr.resources.num_cpus))


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point: `loop_config["worker"]` is this worker's `WorkerConfig`."""
    import ray
    import ray.train
    import ray.train.torch
    from transformers import AutoTokenizer

    from rlaif_ray.sync.probe import probe_token_ids
    from rlaif_ray.train.deepspeed_engines import build_engines, init_distributed
    from rlaif_ray.train.exchange import EXCHANGE_NAME

    config: WorkerConfig = loop_config["worker"]
    tr = config.trainer
    torch.set_num_threads(torch_threads(tr))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    init_distributed(tr.use_gpu)
    device = ray.train.torch.get_device()
    torch.manual_seed(config.seed)
    path = local_model_path(config.model)
    tokenizer = AutoTokenizer.from_pretrained(path)  # the policy's own: padding and probe
    tokens = Tokens(tokenizer.pad_token_id, probe_token_ids(tokenizer))
    actor, critic, ref = build_engines(tr, path, world, device)
    try:
        exchange = ray.get_actor(EXCHANGE_NAME, namespace=config.namespace)
    except ValueError:  # the driver already ended the run
        return
    first = _restore(actor, critic, config.resume_path, config.fit_dir)
    try:
        _train(config, tokens, exchange, first, actor, critic, ref, rank, world, device)
    except ray.exceptions.RayActorError as err:
        if err.actor_id != exchange._actor_id.hex():
            raise
        # The driver removed the exchange: it stopped the run (an error, Ctrl-C). End this
        # fit quietly instead of failing it into Ray Train's retries.
        logger.info("the driver ended the run; rank %d stops", rank)


def _train(config: WorkerConfig, tokens: Tokens, exchange, first: int, actor, critic, ref,
           rank: int, world: int, device) -> None:
    """Iterations `first`.. of PPO: take the driver's batch, train, publish the policy,
    checkpoint and report."""
    import ray
    import ray.train

    from rlaif_ray.sync.digest import state_digests
    from rlaif_ray.sync.probe import SyncProbe
    from rlaif_ray.train.deepspeed_engines import full_state_dict

    tr = config.trainer
    stall = config.stall_timeout_s
    predecessors = bounded_get(exchange.register_worker.remote(rank, os.getpid(), first),
                               stall, "the train exchange (registering)")

    def fault(point: str, iteration: int) -> None:  # the test seam of rlaif_ray.faults
        if rank == 0:
            trainer_kill_point(config.kill_at, predecessors, point, iteration)

    for iteration in range(first, config.iterations):
        # Waits as long as the driver takes to judge the batch: the driver bounds its own
        # stages, and the exchange (owned by the driver) ends with it, ending this wait.
        samples = ray.get(exchange.get_batch.remote(iteration, rank))
        fault("train", iteration)
        clock = time.perf_counter()
        metrics = ppo_iteration(actor, critic, ref, samples, tr, rank, world, device,
                                tokens.pad_id, config.temperature, iteration, config.seed,
                                config.top_p)
        metrics["update_s"] = time.perf_counter() - clock
        state = full_state_dict(actor, tr.zero_stage)  # rank 0's, None elsewhere
        logprobs = probe_logprobs(actor, tokens.probe_ids, device)  # every rank
        probe = (SyncProbe(tokens.probe_ids, logprobs, config.probe_tolerance,
                           state_digests(state)) if state is not None else None)
        due = checkpoint_due(iteration, tr.checkpoint_every, config.iterations)
        clock = time.perf_counter()
        checkpoint_dir = (_save_checkpoint(actor, critic, iteration, state, probe,
                                           os.path.basename(config.fit_dir), tr,
                                           config.model.path)
                          if due else None)
        metrics["checkpoint_s"] = time.perf_counter() - clock
        if state is not None and probe is not None:  # rank 0
            transport(config.sync_transport).publish(Publication(
                exchange, config, iteration + 1, metrics, probe, state, device,
                functools.partial(fault, iteration=iteration)))
            fault("handover", iteration)
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if due else None
        ray.train.report({**metrics, "iteration": iteration}, checkpoint=checkpoint,
                         delete_local_checkpoint_after_upload=True)
        if due and rank == 0:
            bounded_get(exchange.checkpointed.remote(iteration), stall,
                        f"the train exchange (checkpoint of iteration {iteration})")
