"""One generator replica: a Ray actor owning an in-process vLLM engine with the policy.

It samples n answers per prompt with the sampled tokens' log-probs, and loads new policy
weights in place (no restart), verifying them with a log-prob probe before it serves them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rlaif_ray.data.records import Candidate
from rlaif_ray.lora import AdapterTarget
from rlaif_ray.sync.collective import GroupSpec, TensorLayout, open_group, receive
from rlaif_ray.sync.digest import check_digests, digesting
from rlaif_ray.sync.payload import TensorBytes, from_payload
from rlaif_ray.sync.probe import SyncProbe, WeightSyncError, max_gap, probe_token_ids
from rlaif_ray.vllm_engine import EngineSpec, create_llm


@dataclass(frozen=True)
class SamplingSpec:
    """Sampling settings of a generate call (a generator config section, minus engine keys)."""

    n: int
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0

    @classmethod
    def from_config(cls, gen_cfg: Any) -> SamplingSpec:
        return cls(n=gen_cfg.samples_per_prompt, max_tokens=gen_cfg.max_tokens,
                   temperature=gen_cfg.temperature, top_p=gen_cfg.top_p)


class Generator:
    """Body of the generator actor (wrapped with `ray.remote` by the pool)."""

    def __init__(self, replica: str, spec: EngineSpec, store: str | None = None,
                 stall_timeout_s: float = 300.0) -> None:
        self.replica = replica
        self.stall_timeout_s = stall_timeout_s  # bounds the catch-up after a restart
        self.model = spec.model.path
        self.lora = spec.lora
        # A LoRA run's policy: the adapter of the version served (None: the base, version 0),
        # each version's adapter in a directory of its own under `adapter_root`.
        self.adapter: Any = None  # vllm.lora.request.LoRARequest
        self.adapter_root = (tempfile.mkdtemp(prefix=f"rlaif-adapters-{replica}-")
                             if self.lora.enabled else None)
        self.version = 0
        # Set when a weight update failed half-way: the engine must not serve until fixed.
        self.broken: str | None = None
        self.llm = create_llm(spec)
        self.tokenizer = self.llm.get_tokenizer()
        # vLLM's first prompt-logprobs request is slow (seconds, once per engine): pay it now,
        # not inside the first weight sync's timeout.
        self.probe(probe_token_ids(self.tokenizer))
        if store is not None:
            self._catch_up(store)

    def _catch_up(self, store: str) -> None:
        """After a restart: load the pool's current policy version, verified against the
        sender's checksums and probe, before serving (a failed check leaves it refusing to
        serve until the next weight sync)."""
        import ray

        wait = self.stall_timeout_s
        try:
            version, [payload_ref], probe = ray.get(ray.get_actor(store).latest.remote(),
                                                    timeout=wait)
        except (ValueError, TypeError):  # no store yet, or nothing pushed yet
            return
        except ray.exceptions.GetTimeoutError:
            self.broken = (f"{self.replica}: restarted, and the policy store did not say "
                           f"which version to catch up to within {wait:g}s "
                           f"(run.stall_timeout_s); serving again after the next weight sync")
            return
        try:
            payload = ray.get(payload_ref, timeout=wait)
        except ray.exceptions.GetTimeoutError:
            self.broken = (f"{self.replica}: restarted, and policy version {version} to catch "
                           f"up to did not arrive within {wait:g}s (run.stall_timeout_s); "
                           f"serving again after the next weight sync")
            return
        except ray.exceptions.RayError as err:  # its owner died too
            self.broken = (f"{self.replica}: restarted, and policy version {version} to catch "
                           f"up to is gone ({type(err).__name__}); serving again after the "
                           f"next weight sync")
            return
        with contextlib.suppress(WeightSyncError):  # self.broken says why; a sync repairs it
            self._apply(version, probe, lambda: self._load(payload, version))

    def info(self) -> dict[str, Any]:
        return {"replica": self.replica, "model": self.model, "policy_version": self.version,
                "pid": os.getpid()}

    def reseed(self, seed: int) -> None:
        """Reset the sampler's random state (from `seed` and this replica's name), so an
        iteration samples the same after a restart as in an uninterrupted run."""
        import random
        import zlib

        import numpy as np
        import torch

        seed = (seed * 1_000_003 + zlib.crc32(self.replica.encode())) % 2**31
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _chat_prompt(self, text: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )

    def generate(self, prompts: list[dict[str, str]], sampling: SamplingSpec,
                 iteration: int = 0) -> list[Candidate]:
        """Sample `sampling.n` answers for each `{prompt_id, prompt}`."""
        from vllm import SamplingParams

        if self.broken:
            raise WeightSyncError(self.broken)
        params = SamplingParams(n=sampling.n, max_tokens=sampling.max_tokens,
                                temperature=sampling.temperature, top_p=sampling.top_p,
                                logprobs=0)
        start = time.perf_counter()
        outputs = self.llm.generate([self._chat_prompt(p["prompt"]) for p in prompts], params,
                                    use_tqdm=False, lora_request=self.adapter)
        seconds = time.perf_counter() - start
        rows: list[Candidate] = []
        for request, output in zip(prompts, outputs, strict=True):
            for sample in output.outputs:
                token_ids = list(sample.token_ids)
                rows.append(Candidate(
                    prompt_id=request["prompt_id"],
                    prompt=request["prompt"],
                    prompt_token_ids=list(output.prompt_token_ids),
                    response_id=f"{request['prompt_id']}/i{iteration}/s{sample.index}",
                    response=sample.text,
                    response_token_ids=token_ids,
                    logprobs=[lp[t].logprob for t, lp in zip(token_ids, sample.logprobs,
                                                              strict=True)],
                    finish_reason=sample.finish_reason or "unknown",
                    generator_replica=self.replica,
                    generation_s=seconds,
                    policy_version=self.version,
                    iteration=iteration,
                ))
        return rows

    def greedy(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        """Greedy continuations of chat prompts (token ids), for checks and probes."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        outputs = self.llm.generate([self._chat_prompt(t) for t in texts], params,
                                    use_tqdm=False, lora_request=self.adapter)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def probe(self, token_ids: list[int], adapter: Any = None) -> list[float]:
        """log p(token_i | tokens_<i), i >= 1, under the weights this engine serves now (or
        under the base with `adapter`, a LoRARequest)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        output = self.llm.generate([TokensPrompt(prompt_token_ids=token_ids)], params,
                                   use_tqdm=False, lora_request=adapter or self.adapter)[0]
        return [entry[t].logprob for t, entry in zip(token_ids[1:], output.prompt_logprobs[1:],
                                                      strict=True)]

    def _adapter_target(self, version: int) -> AdapterTarget | None:
        """Where the adapter of policy `version` goes (None: full weights load in place)."""
        if self.adapter_root is None:
            return None
        return AdapterTarget(os.path.join(self.adapter_root, f"v{version}"), self.lora,
                             self.model)

    def _load(self, payload: dict[str, TensorBytes], version: int) -> list[dict[str, int]]:
        weights = list(from_payload(payload).items())
        loaded = self.llm.collective_rpc(load_into_worker,
                                         args=(weights, self._adapter_target(version)))
        self.llm.reset_prefix_cache()
        return loaded

    def _receive(self, group: GroupSpec, rank: int, layout: list[TensorLayout],
                 bucket_bytes: int, version: int) -> list[dict[str, int]]:
        loaded = self.llm.collective_rpc(
            receive_into_worker,
            args=(group, rank, layout, bucket_bytes, self._adapter_target(version)))
        self.llm.reset_prefix_cache()
        return loaded

    def update_weights(self, payload: dict[str, TensorBytes], version: int,
                       probe: SyncProbe | None) -> dict[str, Any]:
        """Load the object-store `payload` in place as policy `version` and verify it."""
        return self._apply(version, probe, lambda: self._load(payload, version))

    def receive_weights(self, group: GroupSpec, rank: int, layout: list[TensorLayout],
                        bucket_bytes: int, version: int,
                        probe: SyncProbe | None) -> dict[str, Any]:
        """Join the broadcast `group` as `rank` (its engine's TP workers take the ranks
        after it), load what the trainer sends in place as policy `version`, verify it."""
        return self._apply(version, probe,
                           lambda: self._receive(group, rank, layout, bucket_bytes, version))

    def _adapter_request(self, version: int) -> Any:
        """vLLM's request for the adapter of policy `version` (None: full weights)."""
        target = self._adapter_target(version)
        if target is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(f"policy-v{version}", version, target.directory)

    def _retire(self, adapter: Any) -> None:
        """Drop an adapter no longer served: from the engine and from disk."""
        if adapter is None:
            return
        with contextlib.suppress(KeyError, ValueError):  # never loaded (a failed probe)
            self.llm.llm_engine.remove_lora(adapter.lora_int_id)
        shutil.rmtree(adapter.lora_path, ignore_errors=True)

    def _apply(self, version: int, probe: SyncProbe | None,
               load: Callable[[], list[dict[str, int]]]) -> dict[str, Any]:
        """Run `load` (it loads in place, resets the prefix cache and returns each engine
        worker's checksums of what it loaded), check them against the sender's, verify with
        `probe`, then bump the version; a failure half-way leaves the replica refusing to
        serve until a good update."""
        if version <= self.version:
            raise WeightSyncError(f"{self.replica}: refusing version {version}, already at "
                                  f"{self.version}")
        start = time.perf_counter()
        adapter = self._adapter_request(version)
        try:
            loaded_digests = load()
        except Exception as err:
            self.broken = f"{self.replica}: loading version {version} failed: {err!r}"
            self._retire(adapter)
            raise WeightSyncError(self.broken) from err
        loaded = time.perf_counter()
        gap = None
        try:
            if probe is not None and probe.digests is not None:
                for worker, digests in enumerate(loaded_digests):
                    check_digests(probe.digests, digests, f"{self.replica} worker {worker}",
                                  version)
            if probe is not None:
                gap = max_gap(probe.logprobs, self.probe(probe.token_ids, adapter))
                if gap > probe.tolerance:
                    raise WeightSyncError(
                        f"{self.replica}: log-prob probe after loading version {version} "
                        f"differs by {gap:.4g} > tolerance {probe.tolerance:g} "
                        f"(generator.sync_probe_tolerance)")
        except WeightSyncError as err:
            self.broken = str(err)
            self._retire(adapter)
            raise
        if adapter is not None:
            self._retire(self.adapter)
            self.adapter = adapter
        self.broken = None
        self.version = version
        done = time.perf_counter()
        return {"replica": self.replica, "policy_version": version, "probe_gap": gap,
                "seconds": done - start, "load_s": loaded - start, "probe_s": done - loaded}


def _take(worker, weights: Iterable[tuple[str, Any]],
          adapter: AdapterTarget | None) -> dict[str, int]:
    """Load `weights` in the vLLM `worker`: in place, or (a LoRA run) as the adapter
    directory `adapter`, written by the engine's first worker (the others check what they
    received and load the adapter from that directory when served); returns the checksum
    of every tensor taken."""
    digests: dict[str, int] = {}
    weights = digesting(weights, digests)
    if adapter is None:
        worker.reload_weights(weights_iterator=weights)
    elif worker.rank == 0:
        adapter.write(weights)
    else:
        for _ in weights:
            pass
    return digests


def load_into_worker(worker, weights: list[tuple[str, Any]],
                     adapter: AdapterTarget | None = None) -> dict[str, int]:
    """Runs in each vLLM worker (through `collective_rpc`): load `weights` (`_take`);
    returns the checksum of every tensor it loaded."""
    return _take(worker, weights, adapter)


def receive_into_worker(worker, group: GroupSpec, rank: int, layout: list[TensorLayout],
                        bucket_bytes: int, adapter: AdapterTarget | None = None
                        ) -> dict[str, int]:
    """Runs in each vLLM worker (through `collective_rpc`): join `group` as `rank` plus the
    worker's tensor-parallel rank, and load the weights as the buckets arrive (`_take`);
    returns the checksum of every tensor it loaded."""
    import torch

    device = getattr(worker, "device", None) or torch.device("cpu")
    member = open_group(group, rank + worker.rank)
    return _take(worker, receive(member, layout, bucket_bytes, device), adapter)
