"""An `http` judge replica: any OpenAI-compatible chat endpoint (a vLLM server, a hosted
judge behind an OpenAI-compatible API, ...).

Each replica is a light Ray actor with `concurrency` request threads; failures (HTTP 429 and
5xx, timeouts, broken bodies) are retried with exponential backoff, then returned as errors,
which become counted abstentions. The API key comes from the environment variable the
config names (in the driver, handed to the actor in memory; else on the judge's node) and
is never logged or stored."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from rlaif_ray.judge.items import JudgeReply, JudgeRequest

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class HTTPJudge:
    """Body of an `http` judge actor."""

    def __init__(self, replica: str, base_url: str, model: str, api_key_env: str | None,
                 temperature: float, max_tokens: int,
                 concurrency: int, timeout_s: float, max_retries: int,
                 backoff_s: float, api_key: str | None = None) -> None:
        self.replica = replica
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = api_key or os.environ.get(api_key_env)
            if not key:
                raise RuntimeError(f"http judge {replica}: environment variable {api_key_env} "
                                   f"(judges[].api_key_env) is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.pool = ThreadPoolExecutor(max_workers=concurrency)
        self.session = requests.Session()

    def info(self) -> dict[str, Any]:
        return {"replica": self.replica, "url": self.url, "pid": os.getpid()}

    def _body(self, message: str, schema: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "temperature": self.temperature,
                                "max_tokens": self.max_tokens,
                                "messages": [{"role": "user", "content": message}]}
        if schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "vote", "schema": schema, "strict": True}}
        return body

    def _one(self, message: str, schema: dict[str, Any] | None
             ) -> tuple[str | None, str | None, tuple[int, int]]:
        """One reply: (text, None, (prompt, completion) tokens the server reports), or
        (None, error, tokens billed so far: none) after the retries are spent."""
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                reply = self.session.post(self.url, json=self._body(message, schema),
                                          headers=self.headers, timeout=self.timeout_s)
            except requests.RequestException as err:
                error = f"{type(err).__name__}"
                continue
            if reply.status_code in RETRYABLE_STATUS:
                error = f"HTTP {reply.status_code}"
                continue
            if reply.status_code != 200:
                return None, f"HTTP {reply.status_code}", (0, 0)
            try:
                body = reply.json()
                usage = body.get("usage") or {}
                return body["choices"][0]["message"]["content"], None, (
                    int(usage.get("prompt_tokens") or 0),
                    int(usage.get("completion_tokens") or 0))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
                error = f"malformed response body: {type(err).__name__}"
        return None, error, (0, 0)

    def vote(self, requests_: list[JudgeRequest], votes: int,
             schema: dict[str, Any] | None) -> list[JudgeReply]:
        """`votes` replies to each request's message, asking the server to follow the JSON
        `schema` (None: unconstrained), with the token counts per vote as the server
        reports them."""
        start = time.perf_counter()
        futures = [[self.pool.submit(self._one, r.message, schema) for _ in range(votes)]
                   for r in requests_]
        answers = [[f.result() for f in per_request] for per_request in futures]
        seconds = (time.perf_counter() - start) / max(len(requests_), 1)
        return [JudgeReply(texts=[t for t, _, _ in replies], errors=[e for _, e, _ in replies],
                           prompt_tokens=[n[0] for _, _, n in replies],
                           completion_tokens=[n[1] for _, _, n in replies],
                           seconds=seconds, replica=self.replica) for replies in answers]


def replicas(judge_cfg: Any, cache_dir: str | None,
             seed: int) -> tuple[type, Callable[[int, str], tuple], dict[str, str]]:
    """How an `http` judge's replicas are made (`rlaif_ray.judge.kinds`): the actor class,
    each replica's arguments (the API key read here, from `judges[].api_key_env`) and no
    extra environment."""
    api_key = os.environ.get(judge_cfg.api_key_env) if judge_cfg.api_key_env else None
    return HTTPJudge, lambda i, replica: (
        replica, judge_cfg.base_url, judge_cfg.model, judge_cfg.api_key_env,
        judge_cfg.temperature, judge_cfg.max_tokens, judge_cfg.concurrency,
        judge_cfg.timeout_s, judge_cfg.max_retries, judge_cfg.backoff_s, api_key), {}
