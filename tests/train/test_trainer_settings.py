"""Settings the driver hands Ray Train: the controller's poll interval, the worker threads,
how the workers load their models."""

from __future__ import annotations

import os

from rlaif_ray.config import load_config
from rlaif_ray.train.deepspeed_engines import load_kwargs
from rlaif_ray.train.settings import settings_of
from rlaif_ray.train.trainer import HEALTH_CHECK_ENV, set_health_check_interval
from rlaif_ray.train.worker import torch_threads


def test_the_controller_polls_at_the_configured_interval_unless_the_user_set_one(
        monkeypatch):
    monkeypatch.setenv(HEALTH_CHECK_ENV, "")  # restored (or removed) after the test
    monkeypatch.delenv(HEALTH_CHECK_ENV)
    set_health_check_interval(load_config(None, ["trainer.health_check_interval_s=0.5"]))
    assert os.environ[HEALTH_CHECK_ENV] == "0.5"
    monkeypatch.setenv(HEALTH_CHECK_ENV, "3")
    set_health_check_interval(load_config(None, []))
    assert os.environ[HEALTH_CHECK_ENV] == "3"


def test_worker_threads_follow_the_cpu_allocation_unless_set():
    def threads(*overrides):
        return torch_threads(settings_of(load_config(None, list(overrides)).trainer))

    assert threads() == 1
    assert threads("trainer.resources.num_cpus=4") == 4
    assert threads("trainer.resources.num_cpus=0.5") == 1
    assert threads("trainer.resources.num_cpus=4", "trainer.torch_threads=2") == 2


def test_models_load_with_the_configured_dtype_and_attention(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from rlaif_ray.train.critic import ValueModel

    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2)).save_pretrained(tmp_path)
    tr = settings_of(load_config(None, ["trainer.attn_implementation=eager",
                                       "trainer.dtype=bfloat16"]).trainer)
    policy = AutoModelForCausalLM.from_pretrained(tmp_path, **load_kwargs(tr))
    critic = ValueModel(str(tmp_path), **load_kwargs(tr))
    for model in (policy, critic.backbone):
        assert model.config._attn_implementation == "eager"
        assert model.dtype == torch.bfloat16
    default = settings_of(load_config(None, []).trainer)
    assert load_kwargs(default) == {"dtype": torch.float32, "attn_implementation": None}


def test_a_bfloat16_trainer_on_cpu_takes_float32_attention_unless_one_is_set():
    def kernel(*overrides):
        tr = settings_of(load_config(None, list(overrides)).trainer)
        return load_kwargs(tr)["attn_implementation"]

    assert kernel() is None
    assert kernel("trainer.dtype=bfloat16") == "sdpa_fp32"
    assert kernel("trainer.dtype=bfloat16", "trainer.attn_implementation=sdpa") == "sdpa"
    assert kernel("trainer.dtype=bfloat16", "trainer.use_gpu=true") is None
    assert kernel("trainer.attn_implementation=sdpa_fp32") == "sdpa_fp32"


def test_deepspeed_loads_without_importing_mlflow_and_leaves_it_importable():
    """DeepSpeed's autotuner imports mlflow at DeepSpeed's import where it is installed (as
    the `track` extra installs it): a trainer worker's start-up skips it."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from rlaif_ray.train.deepspeed_engines import import_deepspeed\n"
             "deepspeed = import_deepspeed()\n"
             "print(deepspeed.__name__, 'mlflow' in sys.modules)\n"
             "import mlflow\n"
             "print(mlflow.__name__)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # (DeepSpeed prints its accelerator's line to stdout first)
    assert done.stdout.splitlines()[-2:] == ["deepspeed False", "mlflow"]
