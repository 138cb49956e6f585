"""The trained policy out of a run: `run.dir/policy/` and `rlaif-ray export` write model
directories that transformers, a vLLM engine and vLLM's OpenAI-compatible server load."""

import pytest
import requests
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from vllm_server import serve

from rlaif_ray.cli import main
from rlaif_ray.cluster import PoolSpec, bundle_for, reserve_pool
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.train.checkpoints import POLICY_FILE, list_checkpoints

pytestmark = pytest.mark.slow

TEXTS = ["Name a colour.", "Write one word about the sea."]


@pytest.fixture
def trained_run(toy_run):
    """The directory of a finished toy run (3 iterations; checkpoints of 1 and 2 kept)."""
    return toy_run[0]


def test_run_policy_is_the_newest_checkpoint_and_export_picks_any(trained_run, tmp_path):
    newest = list_checkpoints(trained_run)[-1]
    policy = trained_run / "policy"
    assert (policy / "RLAIF_CHECKPOINT").read_text() == f"iteration {newest.iteration}\n"
    for name in ("config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "model.safetensors"):
        assert (policy / name).is_file(), name
    assert not (policy / "BUILD.json").exists()  # it describes the base weights
    assert AutoTokenizer.from_pretrained(policy).chat_template
    older = list_checkpoints(trained_run)[0]
    assert older.iteration < newest.iteration
    assert main(["export", str(trained_run), str(tmp_path / "old"), "--iteration",
                 str(older.iteration)]) == 0
    exported = load_file(str(tmp_path / "old" / "model.safetensors"))
    first = load_file(str(older.path / POLICY_FILE))
    assert exported.keys() == first.keys()
    assert all(torch.equal(exported[k], first[k]) for k in first)
    assert main(["export", str(trained_run), str(tmp_path / "x"), "--iteration", "7"]) == 2
    # Readable by whoever may read the run (a server under another user), as mkdir makes
    # it: not mkdtemp's 0700.
    for directory in (policy, tmp_path / "old"):
        assert directory.stat().st_mode & 0o777 == trained_run.stat().st_mode & 0o777


def test_exported_policy_decodes_the_same_in_transformers_and_vllm(trained_run, test_config):
    """A vLLM engine on the exported directory serves the same weights as the run's
    generator at that version (a weight update equals a fresh engine: test_generator); its
    greedy tokens are transformers' greedy choices, up to fp32 rounding."""
    policy = trained_run / "policy"
    resources = reserve_pool(PoolSpec("exported", 1, bundle_for(test_config.generator.resources)),
                             60)
    pool = GeneratorPool(test_config.generator, resources, str(policy), seed=0, name="exported")
    try:
        greedy = pool.call_all("greedy", TEXTS, 8)[0]
    finally:
        pool.shutdown()
        resources.release()
    model = AutoModelForCausalLM.from_pretrained(policy, torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(policy)
    for text, tokens in zip(TEXTS, greedy, strict=True):
        chat = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                             add_generation_prompt=True, tokenize=False)
        prompt = tokenizer(chat).input_ids  # as vLLM tokenizes a text prompt
        ids = torch.tensor([prompt + tokens])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1]
        chosen = logits.gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)
        assert torch.all(logits.max(-1).values - chosen < 1e-4), text


def test_openai_compatible_server_answers_a_chat_with_the_exported_policy(trained_run,
                                                                         tmp_path):
    with serve(trained_run / "policy", "rlaif-policy", tmp_path / "server.log",
               "--max-model-len", "512") as url:
        reply = requests.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": "rlaif-policy", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": TEXTS[0]}]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    answer = body["choices"][0]  # a random tiny policy's tokens may decode to ""
    assert answer["message"]["role"] == "assistant" and isinstance(
        answer["message"]["content"], str)
    assert answer["finish_reason"] in ("stop", "length") and body["usage"]["completion_tokens"] >= 1
