"""A simulated hosted judge API for `bench scale`: an OpenAI-compatible chat-completions
server on 127.0.0.1 whose replies take `latency_s` (uniform, 0.2-2 s by default) and which
answers a share of requests with HTTP 429 at once, as a rate-limited hosted API does.

Its votes follow the request's JSON schema (`response_format`), and the same message always
gets the same vote, as a confident judge's repeated votes do. It reports its usage in
tokens, and its own counters at `GET /stats`: requests, 429s, busy seconds (the sum of
every reply's delay: over the wall time, the mean number of requests being served).

    python -m bench.judge_api [--latency 0.2 2.0] [--rate-limited 0.05]   # prints its URL
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def vote_for(schema: dict[str, Any], message: str) -> dict[str, Any]:
    """A vote that satisfies `schema` (integer ranges and enums), the same for the same
    message."""
    digest = hashlib.sha256(message.encode()).digest()
    vote: dict[str, Any] = {}
    for i, (key, spec) in enumerate(schema["properties"].items()):
        byte = digest[i % len(digest)]
        if "enum" in spec:
            vote[key] = spec["enum"][byte % len(spec["enum"])]
        else:
            low, high = spec["minimum"], spec["maximum"]
            vote[key] = low + byte % (high - low + 1)
    return vote


class SimulatedJudgeAPI(ThreadingHTTPServer):
    """The server; `stats()` is what `GET /stats` answers."""

    daemon_threads = True

    def __init__(self, latency_s: tuple[float, float] = (0.2, 2.0),
                 rate_limited: float = 0.05, seed: int = 0, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.latency_s = latency_s
        self.rate_limited = rate_limited
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counters = {"requests": 0, "limited": 0, "busy_s": 0.0, "in_flight": 0,
                         "max_in_flight": 0}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def draw(self) -> tuple[bool, float]:
        """(answer with a 429, the reply's delay) for the next request, counted."""
        with self.lock:
            limited = self.rng.random() < self.rate_limited
            delay = 0.0 if limited else self.rng.uniform(*self.latency_s)
            c = self.counters
            c["requests"] += 1
            c["limited"] += limited
            c["busy_s"] += delay
            c["in_flight"] += 1
            c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])
        return limited, delay

    def done(self) -> None:
        with self.lock:
            self.counters["in_flight"] -= 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.counters)


class _Handler(BaseHTTPRequestHandler):
    server: SimulatedJudgeAPI
    protocol_version = "HTTP/1.1"  # keep-alive: a client's session reuses its connection

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if self.path.rstrip("/").endswith("/stats"):
            self._send(200, self.server.stats())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        limited, delay = self.server.draw()
        try:
            if limited:
                self._send(429, {"error": {"message": "rate limited"}})
                return
            time.sleep(delay)
            message = request["messages"][-1]["content"]
            schema = request["response_format"]["json_schema"]["schema"]
            content = json.dumps(vote_for(schema, message))
            self._send(200, {
                "choices": [{"message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(message.split()),
                          "completion_tokens": len(content) // 4}})
        finally:
            self.server.done()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.judge_api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, nargs=2, default=(0.2, 2.0),
                        metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--rate-limited", type=float, default=0.05,
                        help="share of requests answered with HTTP 429")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = SimulatedJudgeAPI(tuple(args.latency), args.rate_limited, args.seed, args.port)
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
