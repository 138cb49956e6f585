"""Training samples from candidates and verdicts: the curriculum's confidence floor and the
length penalty on rewards."""

import pytest

from rlaif_ray.config import ConfigError, load_config
from rlaif_ray.train.samples import training_samples


def _candidate(rid, tokens):
    return {"response_id": rid, "prompt_token_ids": [1, 2], "response_token_ids": [5] * tokens,
            "logprobs": [-1.0] * tokens}


def _verdict(rid, reward, confidence):
    return {"response_id": rid, "prompt_id": "p", "item_kind": "response", "status": "kept",
            "review_status": "none", "reward": reward, "confidence": confidence}


CANDIDATES = [_candidate("short", 2), _candidate("long", 8)]
VERDICTS = [_verdict("short", 0.5, 0.9), _verdict("long", 0.9, 0.4)]


def test_confident_items_first_and_the_floor_admits_the_rest_later():
    assert [s["response_id"] for s in training_samples(CANDIDATES, VERDICTS, 0.6)] == ["short"]
    assert [s["response_id"] for s in training_samples(CANDIDATES, VERDICTS, 0.0)] == [
        "short", "long"]


def test_length_penalty_takes_a_share_of_the_reward_by_length():
    plain = {s["response_id"]: s["reward"] for s in training_samples(CANDIDATES, VERDICTS, 0)}
    shaped = {s["response_id"]: s["reward"]
              for s in training_samples(CANDIDATES, VERDICTS, 0, length_penalty=0.4,
                                        max_tokens=8)}
    assert plain == {"short": 0.5, "long": 0.9}
    assert shaped == pytest.approx({"short": 0.5 - 0.4 * 2 / 8, "long": 0.9 - 0.4})


def test_a_negative_length_penalty_is_refused_by_name():
    with pytest.raises(ConfigError, match="reward.length_penalty"):
        load_config(None, ["reward.length_penalty=-1"])
