"""`bench scale`'s parts that need no cluster: the simulated judge API (votes that follow
the schema, 429s, its counters) and the sweep's arithmetic."""

import json
import threading

import pytest
import requests

from bench.judge_api import SimulatedJudgeAPI, vote_for
from bench.scale import bench_config, efficiency, prompts_for
from rlaif_ray.config import load_config
from rlaif_ray.judge.rubric import Rubric


@pytest.fixture
def serve():
    servers = []

    def start(**kwargs) -> SimulatedJudgeAPI:
        server = SimulatedJudgeAPI(**kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def chat(url: str, message: str, schema: dict) -> requests.Response:
    return requests.post(f"{url}/chat/completions", timeout=10, json={
        "model": "simulated", "messages": [{"role": "user", "content": message}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "vote",
                                                                   "schema": schema}}})


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_votes_follow_the_rubric_schema_and_repeat_for_the_same_message(mode):
    rubric = Rubric.from_config(load_config(None, [f"rubric.mode={mode}"]).rubric)
    schema = rubric.json_schema()
    votes = [vote_for(schema, f"answer {i}") for i in range(50)]
    for vote in votes:
        assert rubric.parse(json.dumps(vote))  # every key, every value valid
    assert vote_for(schema, "answer 3") == votes[3]  # repeated votes agree
    assert len({json.dumps(v, sort_keys=True) for v in votes}) > 10  # and differ by answer


def test_the_api_answers_votes_with_usage_and_counts_its_busy_time(serve):
    server = serve(latency_s=(0.05, 0.05), rate_limited=0.0)
    schema = Rubric.from_config(load_config(None, []).rubric).json_schema()
    reply = chat(server.url, "judge this answer", schema)
    assert reply.status_code == 200
    body = reply.json()
    assert json.loads(body["choices"][0]["message"]["content"]) == vote_for(
        schema, "judge this answer")
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] > 0
    stats = requests.get(f"{server.url}/stats", timeout=10).json()
    assert stats["requests"] == 1 and stats["limited"] == 0
    assert stats["busy_s"] == pytest.approx(0.05) and stats["in_flight"] == 0


def test_the_api_rate_limits_the_share_it_is_told(serve):
    server = serve(latency_s=(0.0, 0.0), rate_limited=0.3, seed=1)
    schema = Rubric.from_config(load_config(None, []).rubric).json_schema()
    codes = [chat(server.url, f"answer {i}", schema).status_code for i in range(200)]
    assert set(codes) == {200, 429}
    assert 0.2 < codes.count(429) / len(codes) < 0.4
    assert requests.get(f"{server.url}/stats", timeout=10).json()["limited"] == \
        codes.count(429)


def test_the_bench_config_pins_each_pool_to_its_node_type(tmp_path):
    cfg = bench_config(str(tmp_path), None, 2, 8, "http://127.0.0.1:1/v1", batch_size=4)
    assert cfg.generator.replicas == 2
    assert dict(cfg.generator.resources.custom) == {"generator_node": 1}
    (judge,) = cfg.judges
    assert (judge.kind, judge.replicas, judge.batch_size) == ("http", 8, 4)
    assert dict(judge.resources.custom) == {"judge_node": 1}
    rule_only = bench_config(str(tmp_path), None, 1, 0, None)
    assert [j.kind for j in rule_only.judges] == ["rule"]


def test_prompts_repeat_the_builtin_set_under_new_ids():
    prompts = prompts_for(400)  # 100 prompts, more than the 48 built in
    assert len(prompts) == 100 and len({p.prompt_id for p in prompts}) == 100
    assert prompts[0].prompt == prompts[48].prompt


def test_efficiency_is_one_when_throughput_grows_with_the_replicas():
    def at(rate):
        return {"median": {"verdicts_per_s": rate}}

    assert efficiency({1: at(2.0), 32: at(64.0)}) == pytest.approx(1.0)
    assert efficiency({1: at(2.0), 2: at(3.0), 32: at(32.0)}) == pytest.approx(0.5)
