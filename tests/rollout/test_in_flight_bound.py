"""The stream's backpressure bound: a number set in the config wins; left null, it grows
with the largest judge pool so every replica's request slots can hold work."""

import pytest

from rlaif_ray.config import load_config
from rlaif_ray.judge.pools import JudgePool
from rlaif_ray.rollout.stream import MIN_BATCHES_IN_FLIGHT, in_flight_bound

RUNNING = object()  # stands for a judge's started replicas: only their presence counts


def pools(*overrides: str):
    cfg = load_config(None, list(overrides))
    return cfg, [JudgePool(j, None if j.kind == "rule" else RUNNING) for j in cfg.judges]


def http_judge(**fields) -> str:
    spec = ", ".join(f"{k}: {v}" for k, v in {"name": "api", "kind": "http",
                                             "base_url": "'http://127.0.0.1:1/v1'",
                                             **fields}.items())
    return f"judges=[{{{spec}}}]"


def test_the_defaults_keep_the_floor():
    cfg, judges = pools()  # one tiny-judge replica
    assert in_flight_bound(cfg, judges) == MIN_BATCHES_IN_FLIGHT == 4


def test_a_number_in_the_config_wins():
    cfg, judges = pools("stream.max_batches_in_flight=2", http_judge(replicas=32))
    assert in_flight_bound(cfg, judges) == 2


def test_rule_judges_need_no_slots():
    cfg, judges = pools("judges=[{name: r, kind: rule, checks: [{type: min_words, value: 1}]}]")
    assert in_flight_bound(cfg, judges) == MIN_BATCHES_IN_FLIGHT


@pytest.mark.parametrize("replicas, bound", [(4, 4), (8, 8), (32, 32)])
def test_it_grows_with_the_replicas(replicas, bound):
    # 8 prompts x 4 answers a batch in 16-item requests: 2 requests per batch, and each
    # replica holds 2 requests, so one batch per replica.
    cfg, judges = pools(http_judge(replicas=replicas))
    assert in_flight_bound(cfg, judges) == bound


def test_an_autoscaled_pool_counts_its_most_replicas():
    cfg, judges = pools(http_judge(replicas=1, min_replicas=1, max_replicas=16))
    assert in_flight_bound(cfg, judges) == 16


def test_pairwise_requests_are_pairs_in_both_orders():
    # 4 answers: 6 pairs a prompt, both orders: 12 requests, 96 a batch of 8 prompts: six
    # 16-item requests per batch; 32 replicas x 2 slots = 64 requests: 11 batches.
    cfg, judges = pools("rubric.mode=pairwise", http_judge(replicas=32))
    assert in_flight_bound(cfg, judges) == 11
    cfg, judges = pools("rubric.mode=pairwise", "voting.both_orders=false",
                        http_judge(replicas=32))
    assert in_flight_bound(cfg, judges) == 22
