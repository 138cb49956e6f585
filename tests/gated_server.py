"""A gate in front of an OpenAI-compatible server, for tests that need a backlog to last: it
holds every request until `clients` requests are held at once (as many callers as the test
expects are all sending), then forwards everything, as a plain pass-through from then on."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class Gate:
    """Opens when `clients` requests wait at it at once, or at `deadline_s` (a bound, so a
    test that fails does not hang: `opened_by` then says "deadline")."""

    def __init__(self, clients: int, deadline_s: float) -> None:
        self.clients = clients
        self.deadline_s = deadline_s
        self.held = 0
        self.opened_by: str | None = None
        self.condition = threading.Condition()

    def wait(self) -> None:
        with self.condition:
            self.held += 1
            if self.opened_by is None and self.held >= self.clients:
                self.opened_by = f"{self.held} requests held at once"
                self.condition.notify_all()
            if not self.condition.wait_for(lambda: self.opened_by is not None,
                                           timeout=self.deadline_s):
                self.opened_by = "deadline"
                self.condition.notify_all()
            self.held -= 1


@contextlib.contextmanager
def gated(upstream: str, gate: Gate):
    """Serve on 127.0.0.1 a pass-through to `upstream` (http://host:port) behind `gate`;
    yields the gate's base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            gate.wait()
            reply = requests.post(upstream + self.path, data=body, timeout=300,
                                  headers={"Content-Type": self.headers["Content-Type"]})
            self.send_response(reply.status_code)
            self.send_header("Content-Type", reply.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
