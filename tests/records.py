"""Records for tests: `rlaif_ray.data.records` candidates, votes and verdicts with the fields
a test does not care about filled in."""

from rlaif_ray.data.records import Candidate, Verdict, Vote


def candidate(response_id="r0", prompt_id="p", prompt="Q", response=None, tokens=3,
              policy_version=0, iteration=0):
    """A Candidate of `tokens` answer tokens (log-prob -1 each); its text defaults to one
    character per token."""
    return Candidate(prompt_id=prompt_id, prompt=prompt, prompt_token_ids=[1, 2],
                     response_id=response_id,
                     response="x" * tokens if response is None else response,
                     response_token_ids=[5] * tokens, logprobs=[-1.0] * tokens,
                     finish_reason="stop", generator_replica="generator-0",
                     generation_s=0.1, policy_version=policy_version, iteration=iteration)


def vote(judge="j", item_id="r0", **fields):
    """A valid pointwise Vote of `judge` on `item_id` (`fields` override the rest)."""
    return Vote(**{"item_id": item_id, "prompt_id": "p", "judge": judge, "judge_kind": "llm",
                   "replica": f"{judge}-0", "kind": "pointwise", "order": "",
                   "sample_index": 0, "raw_text": "", "policy_version": 0, "iteration": 0,
                   **fields})


def verdict(response_id="r0", prompt_id="p", **fields):
    """A judges' Verdict on the response `response_id` (`fields` override the rest)."""
    return Verdict(**{"item_id": response_id, "item_kind": "response", "prompt_id": prompt_id,
                      "response_id": response_id, "response_id_b": None, "policy_version": 0,
                      "iteration": 0, "prompt": "Q", "response": "x", "response_b": None,
                      **fields})
