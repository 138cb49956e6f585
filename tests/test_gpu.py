"""GPU-only paths: CUDA vLLM generators and the NCCL / ZeRO-3 bf16 trainer on one GPU
(fractional GPUs per pool). Run with `make test-gpu` on a GPU machine; skipped elsewhere."""

import pytest

from rlaif_ray.config import load_config
from rlaif_ray.pipeline import run_rlaif

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

TOY_JUDGE = ("judges=[{name: rules, kind: rule, checks: [{type: regex, "
             "pattern: '^\\s*[aeiouAEIOU]'}]}]")


def test_rlaif_loop_on_gpu_with_nccl_zero3_bf16(ray_session, model_cache, tmp_path):
    cfg = load_config("conf/default.yaml", [
        f"run.dir={tmp_path / 'gpu'}", f"cache_dir={model_cache}", TOY_JUDGE,
        "run.iterations=3", "generator.dtype=bfloat16", "generator.resources.num_gpus=0.4",
        "trainer.use_gpu=true", "trainer.resources.num_gpus=0.5", "trainer.dtype=bfloat16",
        "trainer.zero_stage=3", "generator.sync_probe_tolerance=0.1"])
    history = run_rlaif(cfg)
    assert len(history) == 3
    for row in history:
        assert row["sync_probe_gap"] < 0.1  # bf16 engine vs bf16 trainer
        assert row["logprob_gap"] < 0.1
