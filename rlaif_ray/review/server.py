"""`rlaif-ray review serve`: the review page over a run directory (local or `s3://`),
during a run or after it.

A Starlette app rendered on the server with Jinja2 (autoescaping: model text is untrusted
and always shows as text), served by uvicorn, the stack vLLM's own server is built on, so
nothing new is installed. It needs no Ray: a reviewer's laptop can serve a run directory
on an object store. Secure by default: loopback unless told otherwise, and every request
carries the token printed at start (as Jupyter does): `?token=` once, then a same-site
cookie, or `Authorization: Bearer <token>` for the JSON API."""

from __future__ import annotations

import hmac
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from rlaif_ray.judge.modes import SCORE_MAX, SCORE_MIN, WINNERS
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.review.human import HumanVerdicts, parse_answer
from rlaif_ray.review.queue import QueueFilter, ReviewError, review_queue
from rlaif_ray.storage import Location, StoragePath

COOKIE = "rlaif_review_token"
DEFAULT_PORT = 8270
START_BOUND_S = 30.0  # the longest `ReviewServer.start` waits for uvicorn


@dataclass
class ReviewSite:
    """What the page serves: a run directory judged with `rubric`, behind `token`."""

    run_dir: StoragePath
    rubric: Rubric
    token: str
    verdicts: HumanVerdicts = field(init=False)

    def __post_init__(self) -> None:
        self.verdicts = HumanVerdicts(self.run_dir, self.rubric)

    def queue(self, where: QueueFilter) -> list[dict[str, Any]]:
        """The queue as the page shows it: filtered, lowest confidence first."""
        return [e for e in review_queue(self.run_dir, self.rubric.mode) if where.keeps(e)]


def _filter(request: Request) -> QueueFilter:
    params = request.query_params
    iteration = params.get("iteration") or None
    if iteration is not None and not iteration.isdigit():
        raise ReviewError(f"iteration must be a number, got {iteration!r}")
    return QueueFilter(iteration=None if iteration is None else int(iteration),
                       judge=params.get("judge") or None,
                       dimension=params.get("dimension") or None)


class TokenGate(BaseHTTPMiddleware):
    """Lets a request through only with the site's token: a bearer header, the cookie, or
    `?token=` (which sets the cookie and redirects to the same page without it)."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    def _valid(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self._valid(bearer or None) or self._valid(request.cookies.get(COOKIE)):
            return await call_next(request)
        if self._valid(request.query_params.get("token")):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return PlainTextResponse("forbidden: open the address with the token that "
                                 "`rlaif-ray review serve` printed", status_code=403)


def page_templates() -> Jinja2Templates:
    """The review page's templates (the page and each review form's part of it)."""
    return Jinja2Templates(directory=str(resources.files("rlaif_ray.review")
                                         .joinpath("templates")))


def create_app(site: ReviewSite) -> Starlette:
    """The review app: the page (`/`), the queue (`GET /api/queue`) and answers
    (`POST /api/verdicts`, one answer or `{"answers": [...]}`)."""
    templates = page_templates()

    async def page(request: Request) -> Response:
        try:
            where = _filter(request)
        except ReviewError as err:
            return PlainTextResponse(str(err), status_code=400)
        everything = review_queue(site.run_dir, site.rubric.mode)
        queue = [e for e in everything if where.keeps(e)]
        chosen = request.query_params.get("item")
        index = next((i for i, e in enumerate(queue) if e["review_id"] == chosen), 0)
        context = {
            "run_dir": str(site.run_dir), "rubric": site.rubric, "queue": queue,
            "item": queue[index] if queue else None,
            "following": queue[index + 1]["review_id"] if index + 1 < len(queue) else "",
            "where": where, "score_range": list(range(SCORE_MIN, SCORE_MAX + 1)),
            "winners": WINNERS,
            "iterations": sorted({e["iteration"] for e in everything}),
            "judges": sorted({v["judge"] for e in everything for v in e["votes"]}),
        }
        return templates.TemplateResponse(request, "review.html", context)

    async def queue_api(request: Request) -> Response:
        try:
            where = _filter(request)
        except ReviewError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        return JSONResponse({"mode": site.rubric.mode,
                             "dimensions": list(site.rubric.dimensions),
                             "items": site.queue(where)})

    async def verdicts_api(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return JSONResponse({"error": "send JSON (Content-Type: application/json)"},
                                status_code=415)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        raws = body.get("answers", [body]) if isinstance(body, dict) else None
        if not isinstance(raws, list) or not all(isinstance(r, dict) for r in raws):
            return JSONResponse({"error": "send an answer object or {\"answers\": [...]}"},
                                status_code=400)
        try:
            parsed = [(f"answer {i}", parse_answer(raw, site.rubric, f"answer {i}"))
                      for i, raw in enumerate(raws)]
            written = site.verdicts.record([(w, a) for w, a in parsed if a is not None])
        except ReviewError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        return JSONResponse({"written": written,
                             "skipped": sum(a is None for _, a in parsed)})

    return Starlette(routes=[Route("/", page), Route("/api/queue", queue_api),
                             Route("/api/verdicts", verdicts_api, methods=["POST"])],
                     middleware=[Middleware(TokenGate, token=site.token)])


def new_token() -> str:
    """A token for one serving of the page."""
    return secrets.token_urlsafe(24)


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (port 0: a free one), so the address printed is
    the one served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class ReviewServer:
    """The page served by uvicorn on a socket of its own; `start()` serves on a thread
    (tests, a run's live review), `serve_forever()` in the caller's."""

    def __init__(self, run_dir: Location, rubric: Rubric, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, token: str | None = None) -> None:
        import uvicorn

        self.site = ReviewSite(StoragePath.of(run_dir), rubric, token or new_token())
        self.socket = bound_socket(host, port)
        self.host, self.port = host, self.socket.getsockname()[1]
        config = uvicorn.Config(create_app(self.site), log_level="warning", access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address with its token (what a reviewer opens)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.site.token}"

    def serve_forever(self) -> None:
        """Serve until interrupted."""
        self.server.run(sockets=[self.socket])

    def start(self) -> ReviewServer:
        """Serve on a daemon thread; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self.serve_forever, name="review-page",
                                        daemon=True)
        self._thread.start()
        ready, deadline = threading.Event(), time.monotonic() + START_BOUND_S
        while (not self.server.started and self._thread.is_alive()
               and time.monotonic() < deadline):
            ready.wait(0.05)
        if not self.server.started:
            raise RuntimeError("the review page did not start")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (bounded)."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()


def serve_live_review(run_dir: Location, cfg: Any,
                      say: Callable[[str], None]) -> ReviewServer | None:
    """A live-review run's page (`review.mode: live`, `review.serve`): served on a thread
    of the driver on loopback, its address printed with `say`; None in offline mode, or
    with `review.serve` false (the line then says how to serve it)."""
    if cfg.review.mode != "live":
        return None
    say("live review: people's verdicts join the next update; judge them on")
    if not cfg.review.serve:
        say(f"  `rlaif-ray review serve {run_dir}`")
        return None
    server = ReviewServer(run_dir, Rubric.from_config(cfg.rubric), port=0).start()
    say(f"  {server.url}")
    return server

