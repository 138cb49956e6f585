"""The generator pool on real vLLM (CPU) and real Ray."""

import shutil
from pathlib import Path

import pytest
import ray
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from rlaif_ray.cluster import PoolSpec, bundle_for, reserve_pool
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.rollout.generator import SamplingSpec
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.sync.probe import SyncProbe, WeightSyncError

pytestmark = pytest.mark.slow

# vLLM (fp32, CPU) and transformers (fp32) differ only by kernel rounding.
LOGPROB_TOLERANCE = 1e-3


def perturbed(policy_path: str, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """The policy's weights plus seeded noise (a stand-in for a PPO update)."""
    base = load_file(f"{policy_path}/model.safetensors")
    gen = torch.Generator().manual_seed(seed)
    return {k: v + scale * v.std().nan_to_num(0.02) * torch.randn(v.shape, generator=gen)
            for k, v in base.items()}


@pytest.fixture
def restore_weights(generator_pool, policy_path):
    """Put the original policy back (as a newer version) after a test that changes it."""
    yield
    base = load_file(f"{policy_path}/model.safetensors")
    generator_pool.update_weights(base, generator_pool.version + 1)


def test_n_samples_per_prompt_with_logprobs(generator_pool):
    prompts = load_prompts(limit=5)
    rows = generator_pool.generate(prompts)
    assert len(rows) == 5 * 3
    assert {r.prompt_id for r in rows} == {p.prompt_id for p in prompts}
    assert len({r.response_id for r in rows}) == len(rows)
    for row in rows:
        assert 1 <= len(row.response_token_ids) <= 16
        assert len(row.logprobs) == len(row.response_token_ids)
        assert all(lp <= 0 for lp in row.logprobs)
        assert row.finish_reason in ("length", "stop")
        assert row.generator_replica in generator_pool.names
        assert row.policy_version == generator_pool.version


def test_batches_spread_over_both_replicas(generator_pool):
    rows = generator_pool.generate(load_prompts(limit=32),
                                   sampling=SamplingSpec(n=1, max_tokens=4))
    assert {r.generator_replica for r in rows} == set(generator_pool.names)


def test_logprobs_match_transformers_forward(generator_pool, policy_path):
    rows = generator_pool.generate(load_prompts(limit=3))
    model = AutoModelForCausalLM.from_pretrained(policy_path, torch_dtype=torch.float32).eval()
    worst = 0.0
    for row in rows:
        ids = torch.tensor([row.prompt_token_ids + row.response_token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        start = len(row.prompt_token_ids)
        targets = ids[0, start:]
        expected = logp[start - 1:-1].gather(-1, targets[:, None]).squeeze(-1)
        worst = max(worst, (expected - torch.tensor(row.logprobs)).abs().max().item())
    assert worst < LOGPROB_TOLERANCE


def test_update_weights_matches_fresh_engine(generator_pool, policy_path, test_config,
                                             tmp_path, restore_weights):
    texts = [p.prompt for p in load_prompts(limit=4)]
    before = generator_pool.call_all("greedy", texts, 12)
    new_weights = perturbed(policy_path, seed=11)
    version = generator_pool.version + 1
    report = generator_pool.update_weights(new_weights, version)
    assert [i["policy_version"] for i in generator_pool.call_all("info")] == [version] * 2
    assert report.max_probe_gap is not None and report.max_probe_gap < LOGPROB_TOLERANCE
    assert report.bytes == sum(t.numel() * t.element_size() for t in new_weights.values())
    after = generator_pool.call_all("greedy", texts, 12)
    assert after[0] == after[1] != before[0]

    fresh_dir = tmp_path / "fresh-model"
    fresh_dir.mkdir()
    for item in Path(policy_path).iterdir():
        if item.name != "model.safetensors":
            shutil.copy(item, fresh_dir / item.name)
    save_file({k: v.contiguous() for k, v in new_weights.items()},
              str(fresh_dir / "model.safetensors"))
    resources = reserve_pool(PoolSpec("fresh", 1, bundle_for(test_config.generator.resources)),
                             60)
    fresh = GeneratorPool(test_config.generator, resources, str(fresh_dir), seed=0, name="fresh")
    try:
        assert fresh.call_all("greedy", texts, 12)[0] == after[0]
    finally:
        fresh.shutdown()
        resources.release()


def test_stale_version_is_refused(generator_pool, policy_path):
    weights = load_file(f"{policy_path}/model.safetensors")
    with pytest.raises(WeightSyncError, match="refusing version"):
        generator_pool.update_weights(weights, generator_pool.version)


def test_failed_probe_fails_loudly_and_replica_stops_serving(generator_pool, policy_path,
                                                             restore_weights):
    weights = perturbed(policy_path, seed=12)
    honest = generator_pool.reference_probe(weights)
    lying = SyncProbe(honest.token_ids, [lp - 1.0 for lp in honest.logprobs], honest.tolerance)
    with pytest.raises(WeightSyncError, match=r"log-prob probe after loading version .* "
                                              r"differs by"):
        generator_pool.update_weights(weights, generator_pool.version + 1, probe=lying)
    with pytest.raises(Exception, match="log-prob probe"):
        generator_pool.generate(load_prompts(limit=1))


def test_sync_timeout_fails_loudly(generator_pool, policy_path, restore_weights):
    weights = perturbed(policy_path, seed=13)
    probe = generator_pool.reference_probe(weights)
    generator_pool.cfg.sync_timeout_s = 0.001
    try:
        with pytest.raises(WeightSyncError, match=r"timed out after 0.001s on \["):
            generator_pool.update_weights(weights, generator_pool.version + 1, probe=probe)
    finally:
        generator_pool.cfg.sync_timeout_s = 300.0
    generator_pool.version += 1  # the late update still lands on the replicas


def test_replica_that_kept_its_old_weights_is_caught_exactly(generator_pool, policy_path,
                                                             restore_weights):
    """An update at a tiny learning rate (one weight moved by 1e-7): a replica that loads
    the old bytes passes the log-prob probe, but not the sender's checksums."""
    import ray

    from rlaif_ray.sync.payload import to_payload
    from rlaif_ray.sync.probe import max_gap

    old = load_file(f"{policy_path}/model.safetensors")
    new = {k: v.clone() for k, v in old.items()}
    name = next(k for k in new if k.endswith("q_proj.weight"))
    new[name][0, 0] = torch.nextafter(new[name][0, 0], torch.tensor(1.0)) + 1e-7
    expected = generator_pool.reference_probe(new)
    version = generator_pool.version + 1
    stale = generator_pool.replicas.actors[0]
    with pytest.raises(ray.exceptions.RayTaskError,
                       match=rf"different bytes in 1 \({name}\)") as caught:
        ray.get(stale.update_weights.remote(to_payload(old), version, expected))
    assert isinstance(caught.value.cause, WeightSyncError)
    observed = ray.get(stale.probe.remote(expected.token_ids))
    assert max_gap(expected.logprobs, observed) < expected.tolerance  # the probe alone passes
    with pytest.raises(Exception, match="do not match the sender's checksums"):
        ray.get(stale.generate.remote([{"prompt_id": "p", "prompt": "hi"}],
                                      SamplingSpec(n=1, max_tokens=2)))
    # the honest update passes both checks on every replica
    report = generator_pool.update_weights(new, version)
    assert [r["policy_version"] for r in report.replicas] == [version, version]


def test_replicas_that_never_answer_stop_the_stream_after_the_stall_timeout(generator_pool):
    """Frozen replica processes (SIGSTOP: alive, silent) stop the stream with an error that
    names the pool, the bound and the requests in flight, instead of waiting forever."""
    import os
    import signal

    from rlaif_ray.errors import StallError

    pids = [info["pid"] for info in generator_pool.call_all("info")]
    generator_pool.replicas.stall_timeout_s = 3.0
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        with pytest.raises(StallError, match=r"test-generator: no reply within 3s "
                                             r"\(run.stall_timeout_s\); requests in flight"):
            generator_pool.generate(load_prompts(limit=4))
        with pytest.raises(StallError, match=r"no answer from every test-generator replica "
                                             r"\(info\) within 3s \(run.stall_timeout_s\)"):
            generator_pool.call_all("info")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        generator_pool.replicas.stall_timeout_s = 300.0
    assert len(generator_pool.generate(load_prompts(limit=2))) == 2 * 3  # serving again


def _torch_threads(pool: GeneratorPool) -> list[int]:
    """Each replica's torch threads, read inside its actor after its engine loaded."""
    return ray.get([actor.__ray_call__.remote(lambda _: torch.get_num_threads())
                    for actor in pool.replicas.actors])


def test_engines_serve_with_generator_torch_threads(generator_pool, test_config, policy_path):
    assert _torch_threads(generator_pool) == [1, 1]  # null: vLLM's serving default
    gen = OmegaConf.merge(test_config.generator, {"torch_threads": 2})
    resources = reserve_pool(PoolSpec("threads", 1, bundle_for(gen.resources)), 60)
    pool = GeneratorPool(gen, resources, policy_path, seed=0, name="threads")
    try:
        assert _torch_threads(pool) == [2]
        rows = pool.generate(load_prompts(limit=2))
        assert len(rows) == 2 * gen.samples_per_prompt
    finally:
        pool.shutdown()
        resources.release()
