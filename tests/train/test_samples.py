"""Training samples from candidates and verdicts: the curriculum's confidence floor and the
length penalty on rewards."""

import pytest
from records import candidate, verdict

from rlaif_ray.config import load_config
from rlaif_ray.errors import ConfigError
from rlaif_ray.judge.stats import length_bias
from rlaif_ray.train.samples import training_samples


def _candidate(rid, tokens, text=None):
    return candidate(rid, tokens=tokens, response=text)


def _verdict(rid, reward, confidence):
    return verdict(rid, status="kept", reward=reward, confidence=confidence)


CANDIDATES = [_candidate("short", 2), _candidate("long", 8)]
VERDICTS = [_verdict("short", 0.5, 0.9), _verdict("long", 0.9, 0.4)]


def test_confident_items_first_and_the_floor_admits_the_rest_later():
    assert [s.response_id for s in training_samples(CANDIDATES, VERDICTS, 0.6)] == ["short"]
    assert [s.response_id for s in training_samples(CANDIDATES, VERDICTS, 0.0)] == [
        "short", "long"]


def test_length_penalty_takes_out_that_share_of_the_rewards_length_dependence():
    texts = ["ab", "abcd", "abcdef", "abcdefgh", "abc"]
    rewards = [0.2, 0.5, 0.6, 0.9, 0.1]
    candidates = [_candidate(f"r{i}", 3, t) for i, t in enumerate(texts)]
    verdicts = [_verdict(f"r{i}", r, 0.9) for i, r in enumerate(rewards)]

    def shaped(share):
        samples = training_samples(candidates, verdicts, 0, length_penalty=share)
        by_id = {s.response_id: s.reward for s in samples}
        return [by_id[f"r{i}"] for i in range(len(texts))]

    lengths = [len(t) for t in texts]
    assert shaped(0) == rewards
    assert length_bias(lengths, rewards) > 0.8  # a judge that favours long answers
    assert length_bias(lengths, shaped(1.0)) == pytest.approx(0.0, abs=1e-9)
    assert 0 < length_bias(lengths, shaped(0.5)) < length_bias(lengths, rewards)
    assert sum(shaped(1.0)) == pytest.approx(sum(rewards))  # the mean reward stays


def test_a_length_penalty_outside_0_1_is_refused_by_name():
    for value in (-1, 1.5):
        with pytest.raises(ConfigError, match="reward.length_penalty"):
            load_config(None, [f"reward.length_penalty={value}"])
