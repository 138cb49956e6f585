"""A prompt's answers share its forward pass: same log-probs, values and gradients as the
full pass over every row, for the policy (a causal LM) and the critic (backbone + head)."""

from __future__ import annotations

import pytest
import torch

from rlaif_ray.train.batch import collate
from rlaif_ray.train.experience import answer_values, sequence_logprobs
from rlaif_ray.train.shared_prefix import split_prompts
from tests.train_samples import sample

VOCAB = 50


def _config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=64)


def _samples() -> list[dict]:
    """Two prompts of different lengths with three answers each (of different lengths),
    interleaved, and one prompt answered once."""
    g = torch.Generator().manual_seed(0)

    def tokens(n: int) -> list[int]:
        return torch.randint(1, VOCAB, (n,), generator=g).tolist()

    prompts = {"a": tokens(7), "b": tokens(4), "c": tokens(5)}
    order = ["a", "b", "a", "c", "b", "a", "b"]
    lengths = [3, 5, 1, 4, 2, 5, 4]
    return [sample(prompts[p], tokens(n), prompt_id=p)
            for p, n in zip(order, lengths, strict=True)]


def test_split_finds_each_distinct_prompt_once():
    batch = collate(_samples(), 0)
    split = split_prompts(batch)
    assert len(split.prompts) == 3
    owners = split.owner.tolist()
    assert owners[0] == owners[2] == owners[5] and owners[1] == owners[4] == owners[6]
    assert len({owners[0], owners[1], owners[3]}) == 3
    real = split.prompts[split.owner[0]][split.prompt_mask[split.owner[0]].bool()]
    assert real.tolist() == _samples()[0].prompt_token_ids
    alone = split_prompts(collate(_samples()[:2], 0))  # nothing repeats: split all the same
    assert len(alone.prompts) == 2 and sorted(alone.owner.tolist()) == [0, 1]


def _grads(module: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return torch.autograd.grad(loss, [p for p in module.parameters() if p.requires_grad])


def test_policy_logprobs_and_gradients_equal_the_full_pass():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config())
    batch = collate(_samples(), 0)
    weights = torch.rand(batch.mask.shape) * batch.mask
    full, full_logits = sequence_logprobs(model, batch, 0.7, share=False)
    shared, shared_logits = sequence_logprobs(model, batch, 0.7, share=True)
    mask = batch.mask.bool()
    torch.testing.assert_close(shared[mask], full[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared_logits[mask], full_logits[mask], atol=1e-5, rtol=1e-5)
    for a, b in zip(_grads(model, (shared * weights).sum()),
                    _grads(model, (full * weights).sum()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_critic_values_and_gradients_equal_the_full_pass(tmp_path):
    from transformers import LlamaForCausalLM

    from rlaif_ray.train.critic import ValueModel

    torch.manual_seed(0)
    LlamaForCausalLM(_config()).save_pretrained(tmp_path)
    critic = ValueModel(str(tmp_path))
    torch.nn.init.normal_(critic.value_head.weight)  # zero-initialized: make it count
    batch = collate(_samples(), 0)
    mask = batch.mask.bool()
    full = answer_values(critic, batch, share=False)
    shared = answer_values(critic, batch, share=True)
    torch.testing.assert_close(shared[mask], full[mask], atol=1e-5, rtol=1e-5)
    for a, b in zip(_grads(critic, (shared * batch.mask).sum()),
                    _grads(critic, (full * batch.mask).sum()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_policy_with_a_value_head_gives_both_from_one_pass():
    from transformers import LlamaForCausalLM

    from rlaif_ray.train.policy_value import PolicyValueModel
    from rlaif_ray.train.shared_prefix import answer_outputs

    torch.manual_seed(0)
    model = PolicyValueModel(LlamaForCausalLM(_config()))
    torch.nn.init.normal_(model.value_head.weight)  # zero-initialized: make it count
    batch = collate(_samples(), 0)
    mask = batch.mask.bool()
    logits, values = answer_outputs(model, batch, ("logits", "values"), share=True)
    (policy_logits,) = answer_outputs(model.policy, batch, ("logits",), share=False)
    torch.testing.assert_close(logits[mask], policy_logits[mask], atol=1e-5, rtol=1e-5)
    full_logits, full = answer_outputs(model, batch, ("logits", "values"), share=False)
    torch.testing.assert_close(values[mask], full[mask], atol=1e-5, rtol=1e-5)
    # the head reads the trunk's last hidden states, after the final norm
    hidden = model.policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids).last_hidden_state
    width = mask.shape[1]
    by_hand = model.value_head(hidden[:, -width - 1:-1]).squeeze(-1)
    torch.testing.assert_close(full[mask], by_hand[mask], atol=1e-5, rtol=1e-5)
    for a, b in zip(_grads(model, (values * batch.mask).sum() + logits[mask].sum()),
                    _grads(model, (full * batch.mask).sum() + full_logits[mask].sum()),
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["sdpa", "eager", "sdpa_fp32"])
def test_sharing_holds_for_each_attention_kernel(attention):
    from transformers import LlamaForCausalLM

    from rlaif_ray.train.attention import register

    register()

    torch.manual_seed(0)
    config = _config()
    config._attn_implementation = attention
    model = LlamaForCausalLM(config)
    batch = collate(_samples(), 0)
    mask = batch.mask.bool()
    full, _ = sequence_logprobs(model, batch, 1.0, share=False)
    shared, _ = sequence_logprobs(model, batch, 1.0, share=True)
    torch.testing.assert_close(shared[mask], full[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("share", [True, False])
def test_rows_without_a_shared_prompt_score_as_they_do_alone(share):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config())
    samples = _samples()[:2]
    together, _ = sequence_logprobs(model, collate(samples, 0), 1.0, share=share)
    alone, _ = sequence_logprobs(model, collate(samples[:1], 0), 1.0, share=share)
    torch.testing.assert_close(together[0, :3], alone[0], atol=1e-5, rtol=1e-5)
