"""The `http` judge against a real OpenAI-compatible server on 127.0.0.1: vLLM's api_server
serving the tiny judge."""

from collections import Counter

import pytest
from gated_server import Gate, gated
from omegaconf import OmegaConf
from vllm_server import free_port, serve

from rlaif_ray.cluster import PoolSpec, reserve_pool
from rlaif_ray.config import load_config
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.judge.http_judge import HTTPJudge
from rlaif_ray.judge.items import JudgeItem, JudgeRequest
from rlaif_ray.judge.pools import rescale, start_judges
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.votes import parse_reply
from rlaif_ray.replicas import ReplicaSet
from rlaif_ray.rollout.stream import RolloutStream

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def judge_server(model_cache, tmp_path_factory):
    from rlaif_ray.models import build_model

    model = build_model("tiny-qwen2", model_cache)
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(model, "tiny-judge", log, "--max-model-len", "2048",
               "--structured-outputs-config",
               '{"backend": "xgrammar", "disable_any_whitespace": true}') as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def http_judge(ray_session, judge_server):
    resources = reserve_pool(PoolSpec("judge-http", 1, {"CPU": 0.1}), 60)
    replicas = ReplicaSet(HTTPJudge, "judge-http", lambda i, replica: (
        replica, judge_server, "tiny-judge", None, 1.0, 96, 4, 30.0, 2, 0.1), pool=resources)
    replicas.wait_ready()
    yield replicas
    replicas.shutdown()
    resources.release()


ITEM = JudgeItem(item_id="r1", prompt_id="p", prompt="What is 2+2?", response_a="r1",
                 text_a="4", policy_version=0, iteration=0)


def votes_of(rubric, replies):
    return [parse_reply(rubric, ITEM, "http", "http", reply.replica, "", i, text, error)
            for reply in replies
            for i, (text, error) in enumerate(zip(reply.texts, reply.errors,
                                                  strict=True))]


def test_http_judge_structured_votes_parse(http_judge):
    rubric = Rubric.from_config(load_config(None).rubric)
    request = JudgeRequest("r1", "", rubric.render("What is 2+2?", "4"))
    [replies] = http_judge.call_all("vote", [request] * 2, 3, rubric.json_schema())
    rows = votes_of(rubric, replies)
    assert len(rows) == 6
    assert all(r.parse_status == "ok" for r in rows)
    # Every vote is its own request: the tokens the server reports for each (its `usage`).
    for reply in replies:
        assert len(set(reply.prompt_tokens)) == 1 and reply.prompt_tokens[0] > 10
        assert all(n >= 1 for n in reply.completion_tokens)


def test_http_reply_that_does_not_parse_is_a_counted_abstention(http_judge):
    rubric = Rubric.from_config(load_config(None).rubric)
    request = JudgeRequest("r1", "", rubric.render("What is 2+2?", "4"))
    # Unconstrained, the random tiny judge writes free text: it must not become a score.
    [replies] = http_judge.call_all("vote", [request], 4, None)
    rows = votes_of(rubric, replies)
    assert len(rows) == 4
    abstained = [r for r in rows if r.parse_status == "abstain"]
    assert abstained, "a random model's free text should not parse"
    assert all(r.overall is None and r.raw_text and r.error for r in abstained)


def test_unreachable_endpoint_retries_then_abstains(ray_session):
    resources = reserve_pool(PoolSpec("judge-dead", 1, {"CPU": 0.1}), 60)
    dead = ReplicaSet(HTTPJudge, "judge-dead", lambda i, replica: (
        replica, f"http://127.0.0.1:{free_port()}/v1", "m", None, 1.0, 8, 2, 2.0, 2, 0.01),
        pool=resources)
    try:
        [replies] = dead.call_all("vote", [JudgeRequest("x", "", "hi")], 2,
                                  None)
    finally:
        dead.shutdown()
        resources.release()
    assert replies[0].texts == [None, None]
    assert all(e == "ConnectionError" for e in replies[0].errors)


def test_backlog_grows_judge_pool_without_losing_votes(judge_config, generator_pool,
                                                       judge_server, ray_session):
    """Judges scale independently: under backlog an autoscaled judge pool grows (up to what
    the fake `judge_slot` resource allows) and the added replica takes work while the first
    is still busy; idle replicas retire, no vote is lost or counted twice.

    The backlog lasts by construction, not by the machine's speed: a gate in front of the
    judge server holds every request until two are held at once. Each replica sends one at
    a time (one request in flight, one HTTP call at a time), so the gate opens only once the
    added replica serves while the first one's request is still held."""
    gate = Gate(clients=2, deadline_s=120)
    with gated(judge_server.removesuffix("/v1"), gate) as url:
        scaled = ("judges=[{name: scaled, kind: http, model: tiny-judge, base_url: '"
                  + url + "/v1', min_replicas: 1, max_replicas: 3, scale_up_backlog: 2, "
                  "scale_down_idle_s: 0, batch_size: 1, max_inflight_per_replica: 1, "
                  "max_tokens: 64, concurrency: 1, timeout_s: 300, "
                  "resources: {num_cpus: 0.1, custom: {judge_slot: 1}}}]")
        cfg = OmegaConf.merge(judge_config, OmegaConf.from_dotlist([scaled, "voting.votes=2"]))
        [judge] = start_judges(cfg)
        try:
            assert judge.replicas.names == ["judge-scaled-0"]
            stream = RolloutStream(cfg, generator_pool, [judge], Rubric.from_config(cfg.rubric))
            batches = list(stream.run(load_prompts(limit=24), iteration=0))
            assert gate.opened_by == "2 requests held at once"  # not its deadline
            adds = [e for e in judge.replicas.events if e.action == "add"]
            # The session's two judge_slot units hold two replicas: a third stays pending.
            assert [e.replica for e in adds] == ["judge-scaled-1", "judge-scaled-2"]
            assert "waiting" in adds[0].reason
            served = Counter(v.replica for b in batches for v in b.votes)
            assert set(served) == {"judge-scaled-0", "judge-scaled-1"}, served

            items = {c.response_id for b in batches for c in b.candidates}
            votes = Counter((v.item_id, v.sample_index) for b in batches for v in b.votes)
            assert len(items) == 24 * 3
            assert set(votes) == {(i, k) for i in items for k in range(2)}  # none lost
            assert set(votes.values()) == {1}  # none counted twice
            assert all(v.parse_status == "ok" for b in batches for v in b.votes)

            rescale(judge, waiting=0)  # idle now: down to min_replicas, a ready one
            retired = [e.replica for e in judge.replicas.events if e.action == "retire"]
            assert retired[0] == "judge-scaled-2"  # the pending one first: it serves nothing
            assert len(retired) == 2 and len(judge.replicas.names) == 1
            [kept] = judge.replicas.names
            assert judge.replicas.replicas[kept].ready
            [info] = judge.replicas.call_all("info")
            assert info["replica"] == kept  # alive and answering
        finally:
            judge.shutdown()
