"""ppo_step: one PPO update (rollout statistics + ppo_epochs passes over the micro batches)
through the DeepSpeed engines, divided by the same math on plain torch modules with
AdamW, same model and batch, one process, the two measured in turn. Goal <= 1.15."""

from __future__ import annotations

from typing import Any

import torch

from bench.common import BENCH_MODEL, init_single_rank, random_samples, summarize, timed

SAMPLES = 8
PROMPT_TOKENS = 24
RESPONSE_TOKENS = 24


class PlainEngine(torch.nn.Module):
    """The DeepSpeed engine's training surface (`backward`, `step`, accumulation
    boundaries) on a plain module."""

    def __init__(self, module: torch.nn.Module, lr: float, max_grad_norm: float) -> None:
        super().__init__()
        self.module = module
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
        self.max_grad_norm = max_grad_norm
        self.boundary = True

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def set_gradient_accumulation_boundary(self, boundary: bool) -> None:
        self.boundary = boundary

    def backward(self, loss: torch.Tensor, scale_wrt_gas: bool = True) -> None:
        loss.backward()

    def step(self) -> None:
        if not self.boundary:
            return
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def run(runs: int = 3, cache: str | None = None) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from rlaif_ray.config import load_config
    from rlaif_ray.models import resolve_model
    from rlaif_ray.train.critic import ValueModel
    from rlaif_ray.train.deepspeed_engines import frozen, initialize
    from rlaif_ray.train.ppo_update import ppo_iteration

    init_single_rank(29533)
    cfg = load_config("conf/default.yaml", [f"trainer.micro_batch_size={SAMPLES}",
                                            "trainer.ppo_epochs=1",
                                            "trainer.old_logprobs=recompute"]
                      + ([f"cache_dir={cache}"] if cache else []))
    from rlaif_ray.train.settings import settings_of

    tr = settings_of(cfg.trainer)
    path = resolve_model(BENCH_MODEL, cfg.cache_dir)
    device = torch.device("cpu")
    # one answer to each prompt: nothing for the update to share
    samples = random_samples(AutoModelForCausalLM.from_pretrained(path).config.vocab_size,
                             SAMPLES, PROMPT_TOKENS, RESPONSE_TOKENS)

    def build(kind: str):
        torch.manual_seed(0)
        actor = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        critic = ValueModel(path)
        ref = frozen(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tr, 1)
        if kind == "deepspeed":
            return (initialize(actor, tr, tr.actor_lr, 1),
                    initialize(critic, tr, tr.critic_lr, 1), ref)
        return (PlainEngine(actor, tr.actor_lr, tr.max_grad_norm),
                PlainEngine(critic, tr.critic_lr, tr.max_grad_norm), ref)

    engines = {kind: build(kind) for kind in ("plain_torch", "deepspeed")}
    seconds: dict[str, list[float]] = {kind: [] for kind in engines}

    def step(kind: str) -> float:
        actor, critic, ref = engines[kind]
        elapsed, _ = timed(lambda: ppo_iteration(actor, critic, ref, samples, tr, 0, 1, device,
                                                 0, 1.0))
        return elapsed

    for kind in engines:
        step(kind)  # warm-up
    for _ in range(runs):  # interleaved, so drift on a shared machine hits both alike
        for kind in engines:
            seconds[kind].append(step(kind))
    stats = {kind: summarize(values) for kind, values in seconds.items()}
    detail = (f"DeepSpeed {stats['deepspeed']['median']:.2f} s vs plain torch "
              f"{stats['plain_torch']['median']:.2f} s per PPO update")
    return {"unit": "s/step", "detail": detail, "deepspeed": stats["deepspeed"],
            "plain_torch": stats["plain_torch"],
            "ratio": stats["deepspeed"]["median"] / stats["plain_torch"]["median"],
            "goal": "<= 1.15",
            "setup": {"model": BENCH_MODEL, "samples": SAMPLES, "tokens": PROMPT_TOKENS +
                      RESPONSE_TOKENS, "zero_stage": tr.zero_stage, "ppo_epochs": 1}}
