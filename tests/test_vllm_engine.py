"""The environment of engine actors."""

from rlaif_ray.vllm_engine import ENGINE_ENV, engine_env


def test_cpu_engines_run_without_torch_compile_and_gpu_engines_keep_it():
    assert engine_env(0) == {**ENGINE_ENV, "TORCHDYNAMO_DISABLE": "1"}
    assert "TORCHDYNAMO_DISABLE" not in engine_env(0.5)
    assert engine_env(1)["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
