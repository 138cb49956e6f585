"""The environment and arguments of engine actors."""

import pytest
from omegaconf import OmegaConf

from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.model_source import ModelSource
from rlaif_ray.vllm_engine import ENGINE_ENV, EngineSpec, engine_args, engine_env


def section(num_gpus: float = 0, torch_threads: int | None = None, tp: int = 1):
    return OmegaConf.create({"resources": {"num_gpus": num_gpus},
                             "torch_threads": torch_threads, "tensor_parallel_size": tp})


def test_tensor_parallel_engines_run_their_workers_inside_the_actor():
    """vLLM inside a placement group would pick its Ray executor for TP > 1 and ask for
    GPU bundles the pool never reserved: such engines use `mp` workers, spawned."""
    gpu = load_config("conf/gpu-llama8b-qwen72b.yaml").judges[0]
    assert gpu.tensor_parallel_size == 4
    env = engine_env(gpu)
    assert env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # the engine core in the actor
    assert "VLLM_WORKER_MULTIPROC_METHOD" not in engine_env(section(1))
    model = ModelSource("judges[0].model", gpu.model)
    assert engine_args(EngineSpec(model, tensor_parallel_size=4), "/m")[
        "distributed_executor_backend"] == "mp"
    assert engine_args(EngineSpec(model), "/m")["distributed_executor_backend"] is None


def test_cpu_engines_run_without_torch_compile_and_gpu_engines_keep_it():
    assert engine_env(section(0)) == {**ENGINE_ENV, "TORCHDYNAMO_DISABLE": "1"}
    assert "TORCHDYNAMO_DISABLE" not in engine_env(section(0.5))
    assert engine_env(section(1))["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_engines_serve_with_one_thread_unless_torch_threads_is_set():
    assert engine_env(section())["VLLM_OMP_NUM_THREADS_SET_BY_VLLM"] == "1"
    assert "OMP_NUM_THREADS" not in engine_env(section())
    env = engine_env(section(torch_threads=2))
    assert env["OMP_NUM_THREADS"] == "2"
    assert "VLLM_OMP_NUM_THREADS_SET_BY_VLLM" not in env  # vLLM keeps a user's choice


@pytest.mark.parametrize("key", ["generator.torch_threads", "judges.0.torch_threads"])
def test_torch_threads_must_be_positive(key):
    with pytest.raises(ConfigError, match=key.replace("judges.0", r"judges\[0\]")):
        load_config(default_config_path(), [f"{key}=0"])
