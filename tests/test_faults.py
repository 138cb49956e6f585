"""Faults caused for real (SIGKILL of replica processes) during judging and generation:
the run goes on, every item is accounted for, and a restarted generator never serves
stale weights."""

import os
import signal
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.data.stream import JudgeStream
from rlaif_ray.judge.rubric import Rubric

pytestmark = pytest.mark.slow


def kill_replica(replicas, index=0):
    """SIGKILL one replica's process; returns its old pid."""
    pid = replicas.call_all("info")[index]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_killed_judge_replica_restarts_and_its_votes_are_retried(judge_config, generator_pool,
                                                                  judge_pools):
    llm = next(j for j in judge_pools if j.replicas is not None)
    stream = JudgeStream(judge_config, generator_pool, judge_pools,
                         Rubric.from_config(judge_config.rubric))
    batches, old_pid = [], None
    for batch in stream.run(load_prompts(limit=8), iteration=0):
        batches.append(batch)
        if old_pid is None:
            old_pid = kill_replica(llm.replicas)  # later batches are still being judged
    assert llm.replicas.call_all("info")[0]["pid"] != old_pid  # restarted
    candidates = {c["response_id"] for b in batches for c in b.candidates}
    assert len(candidates) == 8 * 3
    votes = Counter((v["item_id"], v["judge"], v["sample_index"])
                    for b in batches for v in b.votes)
    assert set(votes.values()) == {1}  # nothing counted twice
    for item in candidates:
        assert all((item, "test-qwen", k) in votes for k in range(3))  # nothing lost
    verdicts = Counter(v["response_id"] for b in batches for v in b.verdicts)
    assert set(verdicts) == candidates and set(verdicts.values()) == {1}


def test_killed_generator_restarts_with_current_weights(generator_pool, policy_path):
    base = load_file(f"{policy_path}/model.safetensors")
    gen = torch.Generator().manual_seed(21)
    new = {k: v + 0.3 * v.std().nan_to_num(0.02) * torch.randn(v.shape, generator=gen)
           for k, v in base.items()}
    version = generator_pool.version + 1
    generator_pool.update_weights(new, version)
    texts = [p.prompt for p in load_prompts(limit=3)]
    expected = generator_pool.call_all("greedy", texts, 8)[1]
    try:
        rows, old_pid = [], None
        for batch in generator_pool.generate_stream(load_prompts(limit=16)):
            rows.extend(batch)
            if old_pid is None:
                old_pid = kill_replica(generator_pool.replicas)
        assert len({r["prompt_id"] for r in rows}) == 16  # the run went on
        assert {r["policy_version"] for r in rows} == {version}  # no stale sample
        info = generator_pool.call_all("info")
        assert info[0]["pid"] != old_pid and info[0]["policy_version"] == version
        assert generator_pool.call_all("greedy", texts, 8)[0] == expected  # same weights
    finally:
        generator_pool.update_weights(base, generator_pool.version + 1)
