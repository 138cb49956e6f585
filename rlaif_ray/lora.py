"""LoRA (`trainer.lora.rank` > 0): the trainer trains low-rank adapters with peft on a frozen
base, and only the adapter travels to the generators, which serve the base with vLLM's LoRA
support (`enable_lora`, one `LoRARequest` per policy version, loaded from a directory in
peft's format that the receiving side writes on its own disk).

One `LoraSpec` drives both sides, so the adapter the trainer builds and the adapter config
the generators write are the same by construction."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's file names, which vLLM reads too
ADAPTER_CONFIG = "adapter_config.json"
# The ranks vLLM's engines accept as `max_lora_rank` (vllm.config.lora.MaxLoRARanks); an
# adapter of a rank in between is served by the next one up.
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# The base modules adapted unless configured: the attention and MLP projections (Llama and
# Qwen2 names), as the field adapts pretrained models.
ATTENTION_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSpec:
    """The adapter of config `trainer.lora`: rank (0: full fine-tuning), alpha (the update
    is scaled by alpha / rank), dropout, and the base modules it adapts."""

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ATTENTION_MLP

    @classmethod
    def from_section(cls, section: Any) -> LoraSpec:
        """From config `trainer.lora` (its DictConfig, or the `LoraConfig` of a worker's
        `TrainerConfig`)."""
        return cls(int(section.rank), float(section.alpha), float(section.dropout),
                   tuple(section.target_modules))

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def peft_config(self):
        """peft's `LoraConfig` for this adapter (a causal LM's)."""
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none",
                          task_type="CAUSAL_LM")

    def engine_args(self) -> dict[str, Any]:
        """The vLLM `LLM` arguments that let an engine serve this adapter (one at a time)."""
        if not self.enabled:
            return {}
        rank = next(r for r in VLLM_RANKS if r >= self.rank)
        return {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1}


def with_adapter(model: torch.nn.Module, spec: LoraSpec) -> torch.nn.Module:
    """`model` wrapped by peft with `spec`'s adapter (the base frozen), or `model` itself
    when LoRA is off."""
    if not spec.enabled:
        return model
    from peft import get_peft_model

    return get_peft_model(model, spec.peft_config())


def is_adapted(model: torch.nn.Module) -> bool:
    """Whether `model` is a peft model (without importing peft when nothing did: then none
    can be)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def adapter_state(model: torch.nn.Module,
                  state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter's tensors in `state` (a state dict of the peft `model`), named as in
    peft's `adapter_model.safetensors`: the low-rank matrices only (with `lm_head` among
    the targets, peft would add the whole frozen output layer, a vocabulary x hidden
    matrix the generators already hold)."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model, state_dict=state, save_embedding_layers=False)


def write_adapter(directory: str | Path, weights: Iterable[tuple[str, torch.Tensor]],
                  spec: LoraSpec, base_model: str) -> None:
    """Write `weights` (the adapter's tensors) and `spec`'s config as a peft adapter
    directory for the base model named `base_model`; the config goes last."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in weights}
    save_file(tensors, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    write_adapter_config(directory, spec, base_model)


def write_adapter_config(directory: str | Path, spec: LoraSpec, base_model: str) -> None:
    """peft's `adapter_config.json` for `spec` on `base_model`."""
    config = spec.peft_config()
    config.base_model_name_or_path = base_model
    config.save_pretrained(str(directory))


def merged_model(base_path: str | Path, adapter_dir: str | Path):
    """The base model at `base_path` with the adapter in `adapter_dir` merged into its
    weights (a plain transformers model)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype="auto")
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


@dataclass(frozen=True)
class AdapterTarget:
    """Where a generator's engine worker writes a received adapter: a directory on its own
    node, for `spec`'s adapter on the base model at `base_model`."""

    directory: str
    spec: LoraSpec
    base_model: str

    def write(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        write_adapter(self.directory, weights, self.spec, self.base_model)
