"""`make gpu-check`: what one lent GPU machine (torch and transformers there; no Ray, no vLLM)
can check of the GPU paths, in one script well under 10 minutes, with no network:

1. `ppo_update`: one bf16 DeepSpeed PPO update (ZeRO-2, gae with its critic) of the project's
   own update code (`rlaif_ray.train.ppo_update.ppo_iteration` on the engines the Ray Train
   worker builds) on the GPU: finite losses, and the weights moved.
2. `broadcast`: the policy's weights from one process to another through the project's
   collective code (`rlaif_ray.sync.collective`, NCCL), bit for bit (per-tensor checksums).
   NCCL puts one rank per device: with a single GPU this part says it was skipped.

`--device cpu` runs the same code on the CPU over gloo (what this machine and CI can run).
Writes JSON (default bench/results/gpu_check.json) and prints one line per part; exits 1 if a
part that ran failed. On the device, the packages it lacks travel as wheels in `.whl/`
(`make gpu-wheels` here); `make gpu-check` installs them and runs this."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from bench.common import RESULTS, init_single_rank, random_samples

SAMPLES = 8
PROMPT_TOKENS = 24
RESPONSE_TOKENS = 24
MODEL = "tiny-llama"
BUCKET_BYTES = 1 << 20


def ppo_update(gpu: bool, cache: str) -> dict[str, Any]:
    """One PPO update of the project's code through DeepSpeed (bf16 on a GPU)."""
    from rlaif_ray.config import load_config
    from rlaif_ray.models import build_model
    from rlaif_ray.train.deepspeed_engines import build_engines
    from rlaif_ray.train.ppo_update import ppo_iteration
    from rlaif_ray.train.settings import settings_of

    init_single_rank(29541, gpu)
    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    dtype = "bfloat16" if gpu else "float32"
    cfg = load_config("conf/default.yaml", [
        f"cache_dir={cache}", f"trainer.use_gpu={gpu}", f"trainer.dtype={dtype}",
        "trainer.zero_stage=2", "trainer.advantage_estimator=gae", "trainer.critic=separate",
        f"trainer.micro_batch_size={SAMPLES}", "trainer.ppo_epochs=2",
        "trainer.old_logprobs=recompute"])
    tr = settings_of(cfg.trainer)
    path = str(build_model(MODEL, cache))
    torch.manual_seed(0)
    actor, critic, ref = build_engines(tr, path, 1, device)
    before = {k: v.detach().float().clone() for k, v in actor.module.named_parameters()}
    samples = random_samples(actor.module.config.vocab_size, SAMPLES, PROMPT_TOKENS,
                             RESPONSE_TOKENS, answers_per_prompt=2)
    start = time.perf_counter()
    metrics = ppo_iteration(actor, critic, ref, samples, tr, 0, 1, device, 0, 1.0)
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    moved = max((v.detach().float() - before[k]).abs().max().item()
                for k, v in actor.module.named_parameters())
    losses = {k: metrics[k] for k in ("policy_loss", "value_loss", "kl", "entropy")}
    ok = all(v is not None and v == v and abs(v) < 1e6 for v in losses.values()) and moved > 0
    return {"ok": ok, "seconds": seconds, "dtype": dtype, "zero_stage": tr.zero_stage,
            "weights_moved_max": moved, **losses,
            "parameter_dtype": str(next(actor.module.parameters()).dtype)}


def _broadcast_rank(rank: int, spec, cache: str, gpu: bool, out: str, serving) -> None:
    """One member of the broadcast group: rank 0 sends the model's weights, rank 1
    receives them on its own device; each writes its per-tensor checksums. Rank 0 serves
    the group's rendezvous first and sets `serving` (as the trainer's rank 0 serves it
    before it posts its address)."""
    from transformers import AutoModelForCausalLM

    from rlaif_ray.models import build_model
    from rlaif_ray.sync import collective
    from rlaif_ray.sync.digest import tensor_digest

    if rank == 0:
        collective.serve_rendezvous(spec.host, spec.timeout_s, spec.port)
        serving.set()
    elif not serving.wait(spec.timeout_s):
        raise TimeoutError(f"rank 0 did not serve the rendezvous in {spec.timeout_s:g}s")

    device = torch.device("cuda", rank) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    model = AutoModelForCausalLM.from_pretrained(build_model(MODEL, cache),
                                                 dtype=torch.bfloat16 if gpu else torch.float32)
    state = {k: v.to(device) for k, v in model.state_dict().items()}
    group = collective.open_group(spec, rank)
    start = time.perf_counter()
    if rank == 0:
        collective.send(group, state, BUCKET_BYTES, device)
        digests = {k: tensor_digest(v) for k, v in state.items()}
    else:
        digests = {k: tensor_digest(v) for k, v in
                   collective.receive(group, collective.layout_of(state), BUCKET_BYTES,
                                      device)}
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    group.barrier().wait()  # leave together: neither rank exits under the other's group
    collective.close_group(spec, rank)
    Path(out, f"rank{rank}.json").write_text(json.dumps(
        {"digests": digests, "seconds": seconds,
         "bytes": sum(v.numel() * v.element_size() for v in state.values())}))


def broadcast(gpu: bool, cache: str) -> dict[str, Any]:
    """The collective weight broadcast between two processes (NCCL: two GPUs)."""
    from rlaif_ray.sync.collective import GroupSpec, free_port

    if gpu and torch.cuda.device_count() < 2:
        return {"ok": None, "skipped": f"NCCL needs one device per rank; this machine has "
                                       f"{torch.cuda.device_count()} GPU"}
    spec = GroupSpec("gpu-check", "127.0.0.1", free_port(), 2, "nccl" if gpu else "gloo",
                     timeout_s=120)
    with tempfile.TemporaryDirectory() as out:
        serving = mp.get_context("spawn").Event()
        mp.start_processes(_broadcast_rank, args=(spec, cache, gpu, out, serving), nprocs=2,
                           start_method="spawn")
        sent, got = (json.loads(Path(out, f"rank{r}.json").read_text()) for r in (0, 1))
    return {"ok": sent["digests"] == got["digests"], "backend": spec.backend,
            "tensors": len(sent["digests"]), "bytes": sent["bytes"],
            "seconds": got["seconds"]}


PARTS = {"ppo_update": ppo_update, "broadcast": broadcast}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--cache", default=None, help="model cache (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    ns = parser.parse_args(argv)
    gpu = ns.device == "cuda"
    if gpu and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --device cpu")
    cache = ns.cache or tempfile.mkdtemp(prefix="rlaif-gpu-check-")
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if gpu else "cpu",
                              "torch": torch.__version__}
    for name, part in PARTS.items():
        try:
            report[name] = part(gpu, cache)
        except Exception:  # a part that breaks is reported, and the others still run
            report[name] = {"ok": False, "error": traceback.format_exc()[-2000:]}
        result = report[name]
        state = {True: "ok", False: "FAILED", None: "skipped"}[result["ok"]]
        detail = {k: v for k, v in result.items() if k not in ("ok", "error")}
        if "error" in result:
            detail["error"] = result["error"].strip().splitlines()[-1]
        print(f"{name}: {state} " + json.dumps(detail), flush=True)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {ns.out}")
    return 1 if any(report[name]["ok"] is False for name in PARTS) else 0


if __name__ == "__main__":
    sys.exit(main())
