"""LoRA on the trainer: peft adapters on a frozen base through the real DeepSpeed engines
(ZeRO 0-3, each estimator and critic), and what the generators are sent: the adapter's
tensors alone, named as peft saves them, computing what the trainer computes."""

from __future__ import annotations

import pytest
import torch

from bench.common import random_samples
from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.lora import ADAPTER_WEIGHTS, LoraSpec, write_adapter
from rlaif_ray.train.checkpoints import CheckpointRef, resume_mismatch
from rlaif_ray.train.settings import TrainerConfig, settings_of

VOCAB = 64


def _trainer(**overrides) -> TrainerConfig:
    cfg = load_config(None, [f"trainer.{k}={v}" for k, v in overrides.items()])
    return settings_of(cfg.trainer)


# --- pure logic -------------------------------------------------------------------------

def test_engines_serve_the_next_rank_vllm_has_and_nothing_without_lora():
    assert LoraSpec().engine_args() == {}
    assert LoraSpec(rank=8).engine_args() == {"enable_lora": True, "max_lora_rank": 8,
                                              "max_loras": 1}
    assert LoraSpec(rank=12).engine_args()["max_lora_rank"] == 16


@pytest.mark.parametrize(("override", "key"), [
    ("trainer.lora.rank=-1", "trainer.lora.rank"),
    ("trainer.lora.rank=1024", "trainer.lora.rank"),
    ("trainer.lora.alpha=0", "trainer.lora.alpha"),
    ("trainer.lora.dropout=1.0", "trainer.lora.dropout"),
    ("trainer.lora.target_modules=[]", "trainer.lora.target_modules"),
])
def test_bad_lora_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_a_run_resumes_only_with_the_adapter_rank_it_was_written_with(tmp_path):
    from rlaif_ray.storage import StoragePath

    full = CheckpointRef(StoragePath.of(tmp_path), 3, "separate")
    adapter = CheckpointRef(StoragePath.of(tmp_path), 3, "separate", lora_rank=8)
    assert resume_mismatch(full, "separate") is None
    assert resume_mismatch(adapter, "separate", 8) is None
    assert "full weights and this run trains a LoRA adapter of rank 8" in \
        resume_mismatch(full, "separate", 8)
    assert "a LoRA adapter of rank 8 and this run trains a LoRA adapter of rank 4" in \
        resume_mismatch(adapter, "separate", 4)


def test_an_adapter_directory_is_peft_format_with_its_rank(tmp_path):
    spec = LoraSpec(rank=4, alpha=8.0, target_modules=("q_proj",))
    write_adapter(tmp_path, [("base_model.model.x.lora_A.weight", torch.ones(4, 2))], spec,
                  "base")
    from peft import LoraConfig

    saved = LoraConfig.from_pretrained(str(tmp_path))  # as peft reads an adapter
    assert (saved.r, saved.lora_alpha, set(saved.target_modules)) == (4, 8.0, {"q_proj"})
    assert saved.base_model_name_or_path == "base"
    assert (tmp_path / ADAPTER_WEIGHTS).is_file()


def test_the_adapter_sent_holds_the_low_rank_matrices_alone_even_for_the_output_layer():
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlaif_ray.lora import adapter_state, with_adapter

    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16,
                                         intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    spec = LoraSpec(rank=4, target_modules=("q_proj", "lm_head"))
    peft_model = with_adapter(model, spec)
    state = adapter_state(peft_model, peft_model.state_dict())
    assert sorted(k.split(".")[-3] + "." + k.split(".")[-2] for k in state) == [
        "lm_head.lora_A", "lm_head.lora_B", "q_proj.lora_A", "q_proj.lora_B"]
    assert with_adapter(model, LoraSpec()) is model  # rank 0: no adapter


# --- through DeepSpeed ------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32,
                                         intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64))
    path = tmp_path_factory.mktemp("base")
    model.save_pretrained(path)
    return str(path)


CASES = [("grpo", "separate", 0), ("grpo", "separate", 1), ("grpo", "separate", 2),
         ("grpo", "separate", 3), ("rloo", "separate", 0), ("gae", "separate", 0),
         ("gae", "shared", 0)]


@pytest.mark.slow
@pytest.mark.parametrize(("estimator", "critic", "zero_stage"), CASES)
def test_an_update_trains_the_adapter_alone_and_sends_what_the_trainer_computes(
        distributed, base_dir, estimator, critic, zero_stage):
    from peft import get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from rlaif_ray.train.deepspeed_engines import build_engines, full_state_dict
    from rlaif_ray.train.ppo_update import ppo_iteration
    from rlaif_ray.train.worker import probe_logprobs

    tr = _trainer(advantage_estimator=estimator, critic=critic, zero_stage=zero_stage,
                  micro_batch_size=4, ppo_epochs=2, actor_lr=0.05, critic_lr=0.05,
                  **{"lora.rank": 4, "lora.alpha": 8})
    device = torch.device("cpu")
    actor, critic_engine, ref = build_engines(tr, base_dir, 1, device)
    trained = {n for n, p in actor.module.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("value_head") for n in trained)
    before = full_state_dict(actor, zero_stage)
    assert before and all(".lora_A.weight" in k or ".lora_B.weight" in k for k in before)
    assert all(not v.any() for k, v in before.items() if "lora_B" in k)  # peft's start

    samples = random_samples(VOCAB, 8, 6, 5, answers_per_prompt=4)
    metrics = ppo_iteration(actor, critic_engine, ref, samples, tr, 0, 1, device, 0, 1.0)
    assert metrics["policy_loss"] == metrics["policy_loss"]  # finite, not NaN
    after = full_state_dict(actor, zero_stage)
    assert after.keys() == before.keys()
    assert any(not torch.equal(after[k], before[k]) for k in after)

    # What the generators get, loaded on the base, computes the trainer's log-probs.
    tokens = [1, 5, 9, 17, 33, 2, 8]
    served = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                            LoraSpec.from_section(tr.lora).peft_config())
    set_peft_model_state_dict(served, after)
    expected = probe_logprobs(actor, tokens, device)
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logp = torch.log_softmax(served(input_ids=ids).logits[0, :-1].float(), -1)
    got = logp.gather(-1, ids[0, 1:, None]).squeeze(-1).tolist()
    assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) < 1e-4
