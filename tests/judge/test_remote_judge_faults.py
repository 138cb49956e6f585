"""Remote judge faults against a scripted OpenAI-compatible server on 127.0.0.1: 429s,
500s, timeouts, malformed JSON and truncated bodies give retries with backoff, then counted
abstentions; a judge that keeps failing trips its circuit breaker; too few judges left stop
the run; the API key never lands on disk."""

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from omegaconf import OmegaConf

from rlaif_ray.cli import main
from rlaif_ray.cluster import PoolSpec, reserve_pool
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.errors import JudgeQuorumError
from rlaif_ray.judge.http_judge import HTTPJudge
from rlaif_ray.judge.items import JudgeRequest
from rlaif_ray.judge.pools import start_judges
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.replicas import ReplicaSet
from rlaif_ray.rollout.stream import RolloutStream

pytestmark = pytest.mark.slow

DIMS = ["factual_accuracy", "instruction_following", "completeness", "safety"]
GOOD_VOTE = json.dumps(dict.fromkeys(DIMS, 7))
SECRET = "sk-test-DO-NOT-LEAK-4242"


class ScriptedJudge(ThreadingHTTPServer):
    """Answers /v1/chat/completions from a script of faults, then `default` forever."""

    daemon_threads = True

    def __init__(self, script, default="ok"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.default = default
        self.seen = []
        self.auth = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends "hang" replies when the test is done

    def next_fault(self):
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        server.auth[self.headers.get("Authorization", "")] += 1
        fault = server.next_fault()
        server.seen.append(fault)
        if fault in ("429", "500"):
            self.send_response(int(fault))
            self.end_headers()
            return
        if fault == "hang":  # longer than the client's timeout
            server.release.wait(10)
            return
        body = {"ok": json.dumps({"choices": [{"message": {"content": GOOD_VOTE}}]}),
                "malformed": "{not json",
                "unparseable": json.dumps({"choices": [{"message": {"content": "7/10"}}]}),
                "truncated": json.dumps({"choices": []})}[fault].encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        extra = 50 if fault == "truncated" else 0  # promise more than is sent, then close
        self.send_header("Content-Length", str(len(body) + extra))
        self.end_headers()
        self.wfile.write(body)
        if extra:
            self.close_connection = True


@pytest.fixture
def server_factory():
    servers = []

    def make(script, default="ok"):
        server = ScriptedJudge(script, default)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


def http_replicas(url, name, retries=3, timeout_s=1.0):
    resources = reserve_pool(PoolSpec(name, 1, {"CPU": 0.1}), 60)
    replicas = ReplicaSet(HTTPJudge, name, lambda i, replica: (
        replica, url, "judge", None, 1.0, 32, 1, timeout_s, retries, 0.01), pool=resources)
    replicas.wait_ready()
    return replicas, resources


REQUEST = [JudgeRequest("x", "", "score it")]


@pytest.mark.parametrize("fault", ["429", "500", "hang", "malformed", "truncated"])
def test_each_fault_is_retried_then_succeeds(ray_session, server_factory, fault):
    server = server_factory([fault, fault])
    replicas, resources = http_replicas(server.url, f"judge-retry-{fault}")
    try:
        [reply] = replicas.call_all("vote", REQUEST, 1, None)[0]
    finally:
        replicas.shutdown()
        resources.release()
    assert reply.texts == [GOOD_VOTE] and reply.errors == [None]
    assert server.seen == [fault, fault, "ok"]


def test_persistent_fault_becomes_a_counted_abstention(ray_session, server_factory):
    server = server_factory([], default="500")
    replicas, resources = http_replicas(server.url, "judge-dead-500", retries=2)
    try:
        [reply] = replicas.call_all("vote", REQUEST, 3, None)[0]
    finally:
        replicas.shutdown()
        resources.release()
    assert reply.texts == [None] * 3 and reply.errors == ["HTTP 500"] * 3
    assert len(server.seen) == 3 * (2 + 1)  # every vote tried 1 + max_retries times


def _http_judge_cfg(judge_config, url, *extra):
    judges = ("judges=[{name: remote, kind: http, model: judge, base_url: '" + url + "', "
              "timeout_s: 1, max_retries: 1, backoff_s: 0.01, circuit_breaker_failures: 3, "
              "batch_size: 2, resources: {num_cpus: 0.1}}, {name: rules, kind: rule, "
              "checks: [{type: min_words, value: 1}]}]")
    return OmegaConf.merge(judge_config, OmegaConf.from_dotlist([judges, *extra]))


def test_failing_judge_trips_and_the_run_goes_on(ray_session, judge_config, generator_pool,
                                                 server_factory):
    server = server_factory([], default="500")
    cfg = _http_judge_cfg(judge_config, server.url)
    judges = start_judges(cfg)
    try:
        stream = RolloutStream(cfg, generator_pool, judges, Rubric.from_config(cfg.rubric))
        batches = list(stream.run(load_prompts(limit=12), iteration=0))
    finally:
        for judge in judges:
            judge.shutdown()
    assert stream.tripped == ["remote"]
    remote = [v for b in batches for v in b.votes if v.judge == "remote"]
    assert remote and all(v.parse_status == "abstain" for v in remote)
    # Every candidate still has exactly one verdict (from the judges that remain).
    verdicts = Counter(v.response_id for b in batches for v in b.verdicts)
    candidates = {c.response_id for b in batches for c in b.candidates}
    assert set(verdicts) == candidates and set(verdicts.values()) == {1}
    # Far fewer requests than 12 prompts x 3 answers would need: the breaker stopped them.
    assert len(server.seen) < 12 * 3 * 3 * 2 / 2


def test_quorum_stops_the_run_with_a_clear_error(ray_session, judge_config, generator_pool,
                                                 server_factory):
    server = server_factory([], default="500")
    cfg = _http_judge_cfg(judge_config, server.url, "voting.quorum=2")
    judges = start_judges(cfg)
    try:
        stream = RolloutStream(cfg, generator_pool, judges, Rubric.from_config(cfg.rubric))
        with pytest.raises(JudgeQuorumError, match=r"only 1 judge\(s\) left after \['remote'\] "
                                                   r"tripped; voting.quorum is 2"):
            list(stream.run(load_prompts(limit=12), iteration=0))
    finally:
        for judge in judges:
            judge.shutdown()


def test_api_key_never_reaches_run_dir_or_logs(ray_session, model_cache, server_factory,
                                               tmp_path, monkeypatch, capsys, caplog):
    server = server_factory(["unparseable"], default="ok")
    monkeypatch.setenv("RLAIF_TEST_JUDGE_KEY", SECRET)
    run_dir = tmp_path / "secret-run"
    judges = ("judges=[{name: hosted, kind: http, model: judge, base_url: '" + server.url +
              "', api_key_env: RLAIF_TEST_JUDGE_KEY, resources: {num_cpus: 0.1}}]")
    assert main(["judge", "conf/default.yaml", f"run.dir={run_dir}", f"cache_dir={model_cache}",
                 judges, "prompts.limit=2", "generator.samples_per_prompt=2",
                 "generator.max_tokens=4"]) == 0
    assert server.auth[f"Bearer {SECRET}"] == len(server.seen) > 0  # the key was used
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "RLAIF_TEST_JUDGE_KEY" in (run_dir / "config.yaml").read_text()
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err + caplog.text
