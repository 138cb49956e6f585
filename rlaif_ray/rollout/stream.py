"""One iteration's rollout as a stream: candidate batches from the generator pool flow
through the judge pools and voting as they arrive, with a bound on batches being judged at
once (backpressure) and no global barrier. Each judged batch goes to the iteration's
dataset at once (`write_batch`, as Parquet parts: `rlaif_ray.data.parts`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import ray
from omegaconf import DictConfig

from rlaif_ray.data.parts import write_parts
from rlaif_ray.data.prompts import Prompt
from rlaif_ray.data.records import Candidate, Verdict, Vote
from rlaif_ray.errors import JudgeQuorumError, StallError
from rlaif_ray.judge.ensemble import ENSEMBLES
from rlaif_ray.judge.items import JudgeItem, JudgeReply, JudgeRequest
from rlaif_ray.judge.modes import rubric_mode
from rlaif_ray.judge.pools import JudgePool, autoscaled, rescale
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.judge.verdicts import verdicts_for
from rlaif_ray.judge.votes import judge_items, parse_reply, requests_for, rule_votes
from rlaif_ray.review.calibration import calibrated_weights
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.storage import Location

log = logging.getLogger(__name__)

MIN_BATCHES_IN_FLIGHT = 4


def in_flight_bound(cfg: DictConfig, judges: list[JudgePool]) -> int:
    """How many candidate batches are judged at once: `stream.max_batches_in_flight`, or
    (null) enough that every replica of the largest judge pool (at its `max_replicas` when
    autoscaled) has a request in each of its `max_inflight_per_replica` slots, and at least
    `MIN_BATCHES_IN_FLIGHT`. A fixed bound below that leaves replicas idle however many are
    added: with the defaults' 32 answers a batch and 16 items a request, a bound of 4 keeps
    at most 8 requests out (`python -m bench scale`, docs/performance.md)."""
    if cfg.stream.max_batches_in_flight is not None:
        return cfg.stream.max_batches_in_flight
    samples = cfg.generator.samples_per_prompt
    per_prompt = rubric_mode(cfg.rubric.mode).requests_per_prompt(samples,
                                                                  cfg.voting.both_orders)
    needed = MIN_BATCHES_IN_FLIGHT
    for judge in judges:
        if judge.replicas is None:
            continue
        replicas = judge.cfg.max_replicas if autoscaled(judge.cfg) else judge.cfg.replicas
        slots = replicas * judge.cfg.max_inflight_per_replica
        requests_per_batch = -(-cfg.generator.batch_size * per_prompt // judge.cfg.batch_size)
        needed = max(needed, -(-slots // requests_per_batch))
    return needed


@dataclass
class JudgedBatch:
    """One batch of candidates with its votes and verdicts, and the part id it is written
    under."""

    candidates: list[Candidate]
    votes: list[Vote]
    verdicts: list[Verdict]
    stats: JudgeStats
    part: str


@dataclass
class _Pending:
    candidates: list[Candidate]
    items: dict[str, JudgeItem]
    votes: list[Vote] = field(default_factory=list)
    outstanding: int = 0


def judge_weights(cfg: DictConfig, judges: list[JudgePool]) -> dict[str, float]:
    """Each judge's weight in the ensemble: its configured one, times its agreement with
    people so far when `voting.ensemble` is calibrated."""
    weights = {j.name: float(j.cfg.weight) for j in judges}
    if not ENSEMBLES[cfg.voting.ensemble].calibrated:
        return weights
    return calibrated_weights(cfg.run.dir, weights, cfg.voting.calibration_prior,
                              cfg.voting.calibration_prior_items)


class RolloutStream:
    """Drives one iteration: generate -> judge -> vote -> persist, batch by batch."""

    def __init__(self, cfg: DictConfig, generators: GeneratorPool, judges: list[JudgePool],
                 rubric: Rubric,
                 on_queue: Callable[[int, int], None] | None = None) -> None:
        self.cfg = cfg
        # Told (batches being judged, judge requests waiting for a replica) as they change.
        self.on_queue = on_queue
        self.generators = generators
        self.judges = judges
        self.rubric = rubric
        self.weights = judge_weights(cfg, judges)
        self.max_in_flight_seen = 0  # largest number of batches judged at once
        # Circuit breaker: consecutive failed requests per judge; judges taken out.
        self.failures = dict.fromkeys(self.weights, 0)
        self.tripped: list[str] = []

    def _chunks(self, requests: list[JudgeRequest],
                size: int) -> Iterator[list[JudgeRequest]]:
        for start in range(0, len(requests), size):
            yield requests[start:start + size]

    def run(self, prompts: Iterable[Prompt], iteration: int) -> Iterator[JudgedBatch]:
        """Yield each candidate batch once all its votes are in and its verdicts are made."""
        limit = in_flight_bound(self.cfg, self.judges)
        pending: dict[int, _Pending] = {}
        queue: deque[tuple[int, JudgePool, list[JudgeRequest]]] = deque()
        refs: dict[ray.ObjectRef, tuple[int, JudgePool, list[JudgeRequest]]] = {}
        candidate_batches = self.generators.generate_stream(prompts, iteration)
        exhausted, batch_no = False, 0

        def submit_queued() -> None:
            for judge in self.judges:
                rescale(judge, sum(1 for entry in queue if entry[1] is judge))
            for _ in range(len(queue)):
                entry = queue.popleft()
                judge = entry[1]
                if judge.remote.has_capacity():
                    schema = self.rubric.json_schema() if judge.cfg.structured else None
                    refs[judge.remote.submit("vote", entry[2], self.cfg.voting.votes,
                                               schema)] = entry
                else:
                    queue.append(entry)

        while True:
            if not exhausted and len(pending) < limit:
                candidates = next(candidate_batches, None)
                if candidates is None:
                    exhausted = True
                else:
                    pending[batch_no] = self._start(batch_no, candidates, queue)
                    batch_no += 1
                    self.max_in_flight_seen = max(self.max_in_flight_seen, len(pending))
                    submit_queued()
            block = exhausted or len(pending) >= limit
            if refs:
                stall_s = self.cfg.run.stall_timeout_s
                # A replica that finishes starting wakes the wait too: requests waiting in
                # the queue go to it at once, not after the next reply of a busy one.
                starting = [ref for judge in self.judges if judge.replicas is not None
                            for ref in judge.replicas.starting()] if queue else []
                done, _ = ray.wait(list(refs) + starting, num_returns=1,
                                   timeout=stall_s if block else 0)
                if block and not done:
                    busy = sorted({refs[r][1].name for r in refs})
                    raise StallError(f"no vote from judges {busy} within {stall_s:g}s "
                                     f"(run.stall_timeout_s); {len(refs)} requests in flight")
                for ref in (r for r in done if r in refs):  # else a replica became ready
                    number, judge, chunk = refs.pop(ref)
                    judge.remote.finished(ref)
                    replies = ray.get(ref)
                    self._record(pending[number], judge, chunk, replies)
                    if self._failed(judge, replies):
                        self._trip(judge, queue, pending)
                submit_queued()
            if self.on_queue is not None:
                self.on_queue(len(pending), len(queue))
            for number in [n for n, p in pending.items() if p.outstanding == 0]:
                yield self._finish(pending.pop(number))
            if exhausted and not pending:
                return

    def _failed(self, judge: JudgePool, replies: list[JudgeReply]) -> bool:
        """Count a request whose votes all went unanswered; True when the judge trips."""
        if any(reply.answered for reply in replies):
            self.failures[judge.name] = 0
            return False
        self.failures[judge.name] += 1
        return (judge.name not in self.tripped
                and self.failures[judge.name] >= judge.cfg.circuit_breaker_failures)

    def _trip(self, judge: JudgePool, queue: deque, pending: dict[int, _Pending]) -> None:
        """Take `judge` out for the rest of this stream: drop its queued requests (the items
        are judged by the others); stop if fewer than `voting.quorum` judges remain."""
        self.tripped.append(judge.name)
        log.warning("judge %s tripped after %d failed requests in a row; out for the rest of "
                    "the iteration", judge.name, self.failures[judge.name])
        for entry in [e for e in queue if e[1] is judge]:
            queue.remove(entry)
            pending[entry[0]].outstanding -= 1
        remaining = len(self.judges) - len(self.tripped)
        if remaining < self.cfg.voting.quorum:
            raise JudgeQuorumError(
                f"only {remaining} judge(s) left after {self.tripped} tripped; voting.quorum "
                f"is {self.cfg.voting.quorum}")

    def _active(self, judge: JudgePool) -> bool:
        return judge.name not in self.tripped

    def _start(self, number: int, candidates: list[Candidate],
               queue: deque) -> _Pending:
        items = judge_items(self.rubric, candidates)
        state = _Pending(candidates, {i.item_id: i for i in items})
        requests = requests_for(self.rubric, items, self.cfg.voting.both_orders)
        for judge in self.judges:
            if judge.replicas is None:
                state.votes += rule_votes(self.rubric, items, judge.name, judge.cfg.checks)
                continue
            if not self._active(judge):
                continue
            for chunk in self._chunks(requests, judge.cfg.batch_size):
                queue.append((number, judge, chunk))
                state.outstanding += 1
        return state

    def _record(self, state: _Pending, judge: JudgePool, chunk: list[JudgeRequest],
                replies: list[JudgeReply]) -> None:
        name, kind = judge.name, judge.cfg.kind  # read once: a config read is not free
        for request, reply in zip(chunk, replies, strict=True):
            item = state.items[request.item_id]
            for index, (text, error) in enumerate(zip(reply.texts, reply.errors, strict=True)):
                state.votes.append(parse_reply(
                    self.rubric, item, name, kind, reply.replica, request.order, index,
                    text, error, judge_s=reply.seconds / max(len(reply.texts), 1),
                    prompt_tokens=reply.prompt_tokens[index],
                    completion_tokens=reply.completion_tokens[index]))
        state.outstanding -= 1

    def _finish(self, state: _Pending) -> JudgedBatch:
        stats = JudgeStats()
        verdicts = verdicts_for(list(state.items.values()), state.votes, self.weights,
                                self.cfg, stats)
        return JudgedBatch(state.candidates, state.votes, verdicts, stats,
                           f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")


def write_batch(batch: JudgedBatch, run_dir: Location, iteration: int) -> None:
    """Persist one judged batch as Parquet parts of the iteration's dataset."""
    write_parts(run_dir, iteration, batch.part, batch.candidates, batch.votes, batch.verdicts)
