"""A LoRA run end to end (`trainer.lora.rank=8`, the toy task): the generators receive only
the adapter (over either transport, checked by checksum and probe), a resumed run continues
like an uninterrupted one, and what it leaves is an adapter peft and `vllm serve
--enable-lora` load, and that `rlaif-ray export --merge` turns into a whole model."""

import os
import signal

import pytest
import requests
import torch
from safetensors.torch import load_file
from toy import DEFAULT_CONFIG, TOY_JUDGE, answers, toy_args
from vllm_server import serve

from rlaif_ray.cli import main
from rlaif_ray.config import load_config
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.errors import ConfigError
from rlaif_ray.lora import ADAPTER_WEIGHTS, LoraSpec
from rlaif_ray.metrics import read_metrics
from rlaif_ray.pipeline import run_rlaif
from rlaif_ray.train.checkpoints import list_checkpoints

pytestmark = pytest.mark.slow

LORA = ("trainer.lora.rank=8",)
TOKENS = [1, 45, 120, 7, 300, 12]  # a prompt in tiny-llama's vocabulary


def _run(model_cache, run_dir, iterations, *overrides):
    args = toy_args(model_cache, run_dir, iterations)
    return run_rlaif(load_config(args[0], [*args[1:], *LORA, *overrides]))


@pytest.fixture(scope="module")
def lora_runs(ray_session, model_cache, tmp_path_factory):
    """(straight, stepped): 3 iterations uninterrupted (object-store sync), and 2 (collective
    broadcast) then resumed to 3 (object store)."""
    root = tmp_path_factory.mktemp("lora")
    straight, stepped = root / "straight", root / "stepped"
    _run(model_cache, straight, 3)
    _run(model_cache, stepped, 2, "generator.sync_transport=collective")
    _run(model_cache, stepped, 3, "run.resume=true")
    return straight, stepped


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def test_the_generators_receive_only_the_adapter_over_either_transport(lora_runs,
                                                                       policy_path):
    straight, stepped = lora_runs
    adapter = _bytes(load_file(str(straight / "policy" / ADAPTER_WEIGHTS)))
    full = _bytes(load_file(f"{policy_path}/model.safetensors"))
    assert adapter < full / 10
    rows = read_metrics(straight) + read_metrics(stepped)
    assert {row["sync_bytes"] for row in rows} == {adapter}
    assert all(row["sync_probe_gap"] < 1e-3 for row in rows)  # checksums matched too
    broadcast = read_metrics(stepped)[:2]
    assert all(row["sync_group"] for row in broadcast)  # the collective transport
    assert read_metrics(straight)[2]["kl"] > 0  # the adapter moved the policy


def test_a_lora_run_learns_the_toy_task(ray_session, model_cache, tmp_path):
    """Rank 8 on the toy task's whole prompt set (as the estimators' learning tests run):
    the reward rises. Either transport carries the same bytes (the resumed run below
    reproduces the uninterrupted one across them), so one learns as the other."""
    history = run_rlaif(load_config(DEFAULT_CONFIG, [
        f"run.dir={tmp_path / 'run'}", f"cache_dir={model_cache}", TOY_JUDGE,
        "run.iterations=8", *LORA]))
    rewards = [row["reward_mean"] for row in history]
    assert sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2 >= 0.2, rewards


def test_a_resumed_lora_run_continues_like_an_uninterrupted_one(lora_runs, model_cache):
    straight, stepped = lora_runs
    a, b = read_metrics(straight), read_metrics(stepped)
    assert [r["iteration"] for r in b] == [0, 1, 2]
    for key in ("reward_mean", "policy_loss", "value_loss", "kl", "tokens_generated"):
        assert b[2][key] == pytest.approx(a[2][key], rel=1e-4, abs=1e-6), key
    assert answers(stepped, 2) == answers(straight, 2)
    assert all(c.lora_rank == 8 for c in list_checkpoints(stepped))
    with pytest.raises(ConfigError, match="holds a LoRA adapter of rank 8 and this run "
                                          "trains a LoRA adapter of rank 4"):
        _run(model_cache, stepped, 4, "run.resume=true", "trainer.lora.rank=4")


def _rank(adapter_dir) -> int:
    """The rank of the peft adapter in `adapter_dir`, as peft reads it."""
    from peft import LoraConfig

    return LoraConfig.from_pretrained(str(adapter_dir)).r


def _peft_policy(policy_path, adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def _logits(model, tokens=TOKENS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens])).logits[0].float()


def test_the_policy_is_an_adapter_that_peft_and_vllm_serve_load(lora_runs, policy_path,
                                                                tmp_path):
    policy = lora_runs[0] / "policy"
    assert _rank(policy) == 8 and not (policy / "config.json").exists()
    model = _peft_policy(policy_path, policy)
    greedy = list(TOKENS)
    for _ in range(6):
        greedy.append(int(_logits(model, greedy)[-1].argmax()))
    with serve(policy_path, "base", tmp_path / "server.log", "--max-model-len", "512",
               "--enable-lora", "--max-lora-rank", "8",
               "--lora-modules", f"rlaif-policy={policy}") as url:
        reply = requests.post(f"{url}/v1/completions", timeout=60, json={
            "model": "rlaif-policy", "prompt": TOKENS, "max_tokens": 6, "temperature": 0,
            "return_token_ids": True, "ignore_eos": True})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["token_ids"] == greedy[len(TOKENS):]


def test_export_merge_writes_a_whole_model_computing_what_the_adapter_does(
        lora_runs, policy_path, tmp_path, toy_run):
    from transformers import AutoModelForCausalLM

    straight = lora_runs[0]
    assert main(["export", str(straight), str(tmp_path / "merged"), "--merge"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    assert not any("lora" in name for name in merged.state_dict())
    torch.testing.assert_close(_logits(merged), _logits(_peft_policy(policy_path,
                                                                     straight / "policy")),
                               atol=1e-4, rtol=1e-4)
    assert main(["export", str(straight), str(tmp_path / "adapter"), "--iteration", "1"]) == 0
    assert _rank(tmp_path / "adapter") == 8
    # A full fine-tuning run has no adapter to merge.
    assert main(["export", str(toy_run[0]), str(tmp_path / "x"), "--merge"]) == 2


def test_a_killed_lora_generator_restarts_serving_the_current_adapter(lora_runs, test_config,
                                                                      policy_path):
    """A replica restarted mid-stream catches up to the adapter the pool serves (checked
    by checksum and probe), and samples nothing from the base or an older adapter."""
    from rlaif_ray.cluster import PoolSpec, bundle_for, reserve_pool
    from rlaif_ray.rollout.pool import GeneratorPool

    adapter = load_file(str(lora_runs[0] / "policy" / ADAPTER_WEIGHTS))
    gen = test_config.generator
    resources = reserve_pool(PoolSpec("lora-generator", 2, bundle_for(gen.resources)), 60)
    spec = LoraSpec(rank=8, target_modules=tuple(test_config.trainer.lora.target_modules))
    pool = GeneratorPool(gen, resources, policy_path, seed=0, name="lora-generator",
                         lora=spec)  # the run's adapter
    try:
        texts = [p.prompt for p in load_prompts(limit=3)]
        base = pool.call_all("greedy", texts, 8)[1]
        pool.update_weights(adapter, 1)  # probe computed with peft on the base
        served = pool.call_all("greedy", texts, 8)[1]
        assert served != base
        rows, old_pid = [], None
        for batch in pool.generate_stream(load_prompts(limit=16)):
            rows.extend(batch)
            if old_pid is None:
                old_pid = pool.call_all("info")[0]["pid"]
                os.kill(old_pid, signal.SIGKILL)
        assert len({r.prompt_id for r in rows}) == 16
        assert {r.policy_version for r in rows} == {1}
        info = pool.call_all("info")[0]
        assert info["pid"] != old_pid and info["policy_version"] == 1
        assert pool.call_all("greedy", texts, 8)[0] == served
    finally:
        pool.shutdown()
        resources.release()
