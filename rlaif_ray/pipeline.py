"""The RLAIF iteration loop: generate -> judge -> vote -> dataset -> PPO -> weight sync,
`run.iterations` times.

`run.mode=sync` runs the stages in turn. `run.mode=async` is one-step off-policy: the
rollout (generation + judging) of iteration k+1 runs with policy k while the trainer
works on iteration k; every sample records its policy version and the lag is at most 1.
Every stage's output is persisted before the next uses it; each iteration appends one line
to `run.dir/metrics.jsonl` (see `rlaif_ray.metrics` for the other outputs)."""

from __future__ import annotations

import functools
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from omegaconf import DictConfig
from rich.console import Console

from rlaif_ray.cluster import Session
from rlaif_ray.console import RunProgress, dimension_lines, end_lines, summary_table
from rlaif_ray.data.prompts import fit_for_generator, load_prompts
from rlaif_ray.data.records import Candidate
from rlaif_ray.errors import RUN_ERRORS, ConfigError, RunInterrupted
from rlaif_ray.export import refresh_run_policy
from rlaif_ray.faults import kill_point
from rlaif_ray.iteration import Rollout, discard_from, iteration_metrics
from rlaif_ray.judge.cost import judge_prices
from rlaif_ray.judge.pools import (
    JudgePool,
    ScaleEventLog,
    replica_counts,
    start_judges,
    wait_for_judges,
)
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.metrics import (
    DashboardMetrics,
    RunRecorder,
    draw_plots_aside,
    read_metrics,
    write_summary,
)
from rlaif_ray.model_source import model_source
from rlaif_ray.models import check_models, resolve_model
from rlaif_ray.review.live import LiveReview
from rlaif_ray.review.queue import export_review, merged_verdicts, queue_path
from rlaif_ray.review.server import ReviewServer, serve_live_review
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.rollout.stream import RolloutStream, write_batch
from rlaif_ray.startup import (
    announce_session,
    import_trainer_modules,
    load_tokenizer,
    record_config,
)
from rlaif_ray.storage import StoragePath
from rlaif_ray.sync.probe import SyncProbe, probe_tolerance
from rlaif_ray.sync.transports import transport_of
from rlaif_ray.tracking import TrackerSet, check_trackers
from rlaif_ray.train.advantages import critic_kind
from rlaif_ray.train.checkpoints import (
    POLICY_FILE,
    CheckpointRef,
    committed_iterations,
    list_checkpoints,
    prune,
    read_probe,
    resume_mismatch,
    resume_point,
)
from rlaif_ray.train.samples import confidence_floor, training_samples
from rlaif_ray.train.trainer import TrainerRun

T = TypeVar("T")


def _started(value: T | None, what: str) -> T:
    """`value`, set once the run has started; RuntimeError before."""
    if value is None:
        raise RuntimeError(f"{what} exists only once the run has started")
    return value


class Pipeline:
    """Owns the pools and the trainer of one run."""

    def __init__(self, cfg: DictConfig, console: Console | None = None) -> None:
        if not cfg.judges:
            raise ConfigError("key 'judges' must list at least one judge to train with")
        self.cfg = cfg
        self.console = console or Console()
        self.rubric = Rubric.from_config(cfg.rubric)
        self.prompts = load_prompts(cfg.prompts.path, cfg.prompts.limit)
        check_models(cfg)
        self.run_dir = StoragePath.of(cfg.run.dir)
        cfg.run.dir = str(self.run_dir)  # absolute (or a URI) before anything is written
        metrics_path = self.run_dir / "metrics.jsonl"
        if not cfg.run.resume and (list_checkpoints(self.run_dir) or metrics_path.exists()):
            raise ConfigError(f"run.dir {self.run_dir} already holds a run: continue it with "
                              f"run.resume=true, or choose another run.dir")
        # The one resume point (see rlaif_ray.train.checkpoints): the newest complete
        # checkpoint of an iteration whose metrics line was written.
        self.checkpoint = (resume_point(self.run_dir, committed_iterations(
            read_metrics(self.run_dir))) if cfg.run.resume else None)
        mismatch = self.checkpoint and resume_mismatch(
            self.checkpoint, critic_kind(cfg.trainer), cfg.trainer.lora.rank)
        if mismatch:
            raise ConfigError(mismatch)
        self.start = self.checkpoint.iteration + 1 if self.checkpoint else 0
        self.stage = ("start", self.start)  # where the run is, for errors
        record_config(cfg)
        self._generators: GeneratorPool | None = None
        self.judges: list[JudgePool] = []
        self._trainer: TrainerRun | None = None
        self._dashboard: DashboardMetrics | None = None
        self.session: Session | None = None  # the Ray joined (set at start)
        self._progress: RunProgress | None = None
        self._model_path: str | None = None  # the base policy's directory (set at start)
        # An async resume's policy, loaded after its first rollout (_resume_policies).
        self._resume_policy: CheckpointRef | None = None
        # This invocation's fixed costs, for summary.json: engines_ready_s (Ray connected,
        # every engine loaded), trainer_ready_s (every trainer worker loaded and asking for
        # work), shutdown_s (last iteration's end to the summary); from the run's start.
        self.startup: dict[str, float | None] = {}
        self.started_at = self.loop_ended_at = time.time()
        self._scale_events = ScaleEventLog()
        self._review = LiveReview(self.run_dir, cfg)
        self._review_page: ReviewServer | None = None  # live review's page (set at start)
        # Each tracker of run.trackers checked now, before Ray starts.
        self.trackers = check_trackers(cfg, self.console.print)

    @property
    def generators(self) -> GeneratorPool:
        """The generator pool (from the start on)."""
        return _started(self._generators, "the generator pool")

    @property
    def trainer(self) -> TrainerRun:
        """The trainer's fit (from the start on)."""
        return _started(self._trainer, "the trainer")

    @property
    def progress(self) -> RunProgress:
        """The console's progress display (from the loop on)."""
        return _started(self._progress, "the progress display")

    @property
    def dashboard(self) -> DashboardMetrics:
        """The run's dashboard gauges (from the loop on)."""
        return _started(self._dashboard, "the dashboard gauges")

    @property
    def model_path(self) -> str:
        """The base policy's directory (from the start on)."""
        return _started(self._model_path, "the policy's directory")

    def _tidy_checkpoints(self, committed: int) -> None:
        """Prune committed checkpoints to `trainer.keep_checkpoints` and point `policy/` at
        the newest one."""
        prune(self.run_dir, self.cfg.trainer.keep_checkpoints, committed)
        refresh_run_policy(self.run_dir, self.model_path)

    def _publish_replicas(self, dashboard: DashboardMetrics) -> None:
        counts = {"generator": len(self.generators.names), "trainer": self.cfg.trainer.workers}
        for judge in self.judges:
            counts[f"judge-{judge.name}"] = len(judge.replicas.names) if judge.replicas else 0
        dashboard.set_many([("replicas", n, {"pool": pool}) for pool, n in counts.items()])

    def _start(self) -> None:
        """Connect Ray while a thread imports what the trainer needs, then loads the
        tokenizer (seconds of CPU each); start the generators and judges as soon as Ray is
        up, the trainer once its imports are done: every engine and trainer worker loads in
        parallel, and none waits for the tokenizer (only the prompts' lengths need it)."""
        cfg = self.cfg
        model_path = self._model_path = resolve_model(cfg.generator.model, cfg.cache_dir)
        with ThreadPoolExecutor(1, thread_name_prefix="loader") as loader:
            imported = loader.submit(import_trainer_modules)
            loading = loader.submit(load_tokenizer, model_path)
            self.session = announce_session(cfg, self.console)
            self._review_page = serve_live_review(
                self.run_dir, cfg, functools.partial(self.console.print, soft_wrap=True))
            policy_source = model_source(cfg.generator.model, "generator.model", cfg.cache_dir)
            with self.console.status("starting generators, judges and trainer"):
                self._generators = GeneratorPool.from_config(cfg, policy_source, wait=False)
                self.judges = start_judges(cfg, wait=False)
                imported.result()
                self._trainer = TrainerRun(cfg, policy_source, self.checkpoint)
                self.prompts = fit_for_generator(self.prompts, cfg, loading.result(),
                                                 self.console)
                self.generators.wait_ready()
                first, self._resume_policy = self._resume_policies()
                if first is not None:
                    self._load_checkpoint_policy(first)
                wait_for_judges(self.judges)
        self.startup["engines_ready_s"] = time.time() - self.started_at

    def _resume_policies(self) -> tuple[CheckpointRef | None, CheckpointRef | None]:
        """(the checkpoint whose policy rolls out this invocation's first iteration, None:
        the base policy; the one to load once that rollout is done, None: none). Sync: the
        resume point's, then nothing. Async: an uninterrupted run rolled out iteration k
        with policy k-1 (lag 1), which the checkpoint of k-2 holds (the base policy for
        k = 1), then the resume point's. If that checkpoint was pruned
        (`trainer.keep_checkpoints=1`), the resumed iteration has lag 0 (said)."""
        if self.checkpoint is None or self.cfg.run.mode != "async":
            return self.checkpoint, None
        if self.start == 1:
            return None, self.checkpoint
        earlier = [c for c in list_checkpoints(self.run_dir)
                   if c.iteration == self.start - 2]
        if not earlier:
            self.console.print(f"iteration {self.start} rolls out at lag 0: its lag-1 "
                               f"policy (checkpoint {self.start - 2}) was pruned")
            return self.checkpoint, None
        return earlier[-1], self.checkpoint

    def _load_checkpoint_policy(self, checkpoint: CheckpointRef) -> None:
        """Bring the generators to the resume point's policy, verified against the probe
        the trainer saved with it (so the driver never builds the model itself: for a large
        policy on a head node that was the run's biggest memory); a checkpoint written
        before probes were saved is verified against one computed here."""
        from safetensors.torch import load as load_safetensors

        weights = load_safetensors((checkpoint.path / POLICY_FILE).read_bytes())
        saved = read_probe(checkpoint)
        probe = None
        if saved is not None:
            fields, trainer_dtype = saved
            probe = SyncProbe(**{**fields, "tolerance": probe_tolerance(self.cfg.generator,
                                                                        trainer_dtype)})
        self.generators.update_weights(weights, checkpoint.iteration + 1, probe)

    def _shutdown(self, failed: bool, interrupted: bool = False) -> None:
        """Stop the trainer (after its last report, unless the run failed) and the pools.
        Interrupted (Ctrl-C), or failed before its first iteration (a replica that cannot
        start): abort the trainer's fit rather than wait for it to wind down, since it has
        nothing of this invocation to persist; the process ends."""
        if self._trainer is not None:
            abort = interrupted or (failed and self.stage[0] == "start")
            self._trainer.close(grace_s=0.0 if failed else 60.0,
                               wind_down_s=5.0 if interrupted else 30.0, abort=abort)
        if self._review_page is not None:
            self._review_page.stop()
        for judge in self.judges:
            judge.shutdown()
        if self._generators is not None:
            self._generators.shutdown()

    def run(self) -> list[dict[str, Any]]:
        """Run the remaining iterations; returns their metrics rows."""
        if self.cfg.run.resume:
            origin = (f"the checkpoint of iteration {self.checkpoint.iteration}"
                      if self.checkpoint else "the start (no committed checkpoint)")
            self.console.print(f"resuming {self.run_dir} at iteration {self.start}, from "
                               f"{origin}", soft_wrap=True)
            discard_from(self.run_dir, self.start)  # those iterations run again
        recorder = None
        failed, interrupted = True, False
        self.started_at = time.time()
        try:
            self._start()
            # Ray metrics need a connected Ray
            recorder = RunRecorder(self.run_dir, TrackerSet(self.cfg, self.run_dir,
                                                            self.trackers))
            self._publish_replicas(recorder.dashboard)
            history = self._loop(recorder)
            self.loop_ended_at = time.time()
            # Every committed iteration, earlier starts' too (only the loop records them).
            rows = read_metrics(self.run_dir)
            plots = draw_plots_aside(self.run_dir, rows)
            ready = self.trainer.ready_at()
            self.startup["trainer_ready_s"] = (ready - self.started_at if ready is not None
                                               else None)
            failed = False
        except RUN_ERRORS as err:
            stage, iteration = self.stage
            raise type(err)(f"{err} [stage {stage}, iteration {iteration}; completed "
                            f"iterations are kept: continue with run.resume=true]") from err
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback
            interrupted = True
            stage, iteration = self.stage
            raise RunInterrupted(f"interrupted in stage {stage} of iteration {iteration}; "
                                 f"completed iterations are kept: continue with "
                                 f"run.resume=true") from None
        finally:
            self._shutdown(failed, interrupted)
            if recorder is not None and failed:
                recorder.close([], failed=True)
        # The trainer has ended, so every checkpoint is persisted now: on slow storage the
        # last ones may have landed after their iteration's tidy-up.
        self._tidy_checkpoints(len(rows))
        self.startup["shutdown_s"] = time.time() - self.loop_ended_at
        drawn = plots.result()
        summary = write_summary(self.run_dir, rows, self.startup)
        queue = queue_path(self.run_dir)
        queued = export_review(self.run_dir, queue, self.cfg.rubric.mode)
        _started(recorder, "the run's recorder").close(
            drawn + [self.run_dir / "summary.json", self.run_dir / "config.yaml"], failed=False)
        self.console.print(summary_table(rows, str(self.run_dir / "metrics.jsonl")))
        for line in dimension_lines(rows) + end_lines(summary, str(self.run_dir), queued,
                                                      str(queue)):
            self.console.print(line, soft_wrap=True)
        return history

    def _loop(self, recorder: RunRecorder) -> list[dict[str, Any]]:
        cfg, last = self.cfg, self.cfg.run.iterations
        asynchronous = cfg.run.mode == "async"
        self._dashboard = recorder.dashboard
        history = []
        progress = self._progress = RunProgress(self.console, self.start, last)
        mark = time.perf_counter()  # iteration_s of the first iteration includes its rollout
        rollout: Rollout | None = None
        for iteration in range(self.start, last):
            if rollout is None:  # the first iteration's: later ones are rolled out ahead
                rollout = self._rollout(iteration)
                if self._resume_policy is not None:  # an async resume, at its lag
                    self._load_checkpoint_policy(self._resume_policy)
                    self._resume_policy = None
            self.stage = ("train", iteration)
            verdicts = merged_verdicts(self.run_dir, iteration, cfg.rubric.mode,
                                       cfg.reward.pairwise)
            samples = training_samples(rollout.candidates, verdicts,
                                       confidence_floor(iteration, cfg.curriculum),
                                       cfg.reward.length_penalty)
            humans = self._review.humans(iteration, verdicts)
            samples += humans.samples
            progress.stage(iteration, f"train on {len(samples)} samples")
            self.trainer.submit(iteration, samples)
            kill_point("train", iteration, functools.partial(self.trainer.started, iteration))
            following = None
            if asynchronous and iteration + 1 < last:
                following = self._rollout(iteration + 1)
                self.stage = ("train", iteration)
            waited = time.perf_counter()
            update = self.trainer.update(iteration + 1)
            trained = time.perf_counter()
            progress.stage(iteration, "weight sync")
            self.stage = ("sync", iteration)
            kill_point("sync", iteration)
            sync, update = transport_of(update).deliver(
                update, iteration + 1, self.generators, self.trainer, self.console.print)
            done = time.perf_counter()
            row = iteration_metrics(
                rollout, verdicts, update.metrics, sync, self.trainer.restarts(),
                replica_counts(self.judges), self._scale_events.new(self.judges),
                train_s=trained - waited,
                sync_s=done - trained, iteration_s=done - mark,
                prices=judge_prices(cfg.judges), humans=humans).as_row()
            mark = done
            kill_point("commit", iteration, functools.partial(self._checkpointed, iteration))
            recorder.record(row)
            self._tidy_checkpoints(iteration + 1)
            self._publish_replicas(recorder.dashboard)
            for event in row["judge_scale_events"]:
                self.console.print(f"judge scaling: {event}")
            history.append(row)
            progress.done(row)
            if not asynchronous and iteration + 1 < last:
                following = self._rollout(iteration + 1)
            rollout = following
        progress.close()
        return history

    def _checkpointed(self, iteration: int) -> bool:
        """Whether `iteration`'s checkpoint is persisted in the run directory."""
        return any(c.iteration == iteration for c in list_checkpoints(self.run_dir))

    def _rollout(self, iteration: int) -> Rollout:
        """Generate and judge every prompt for `iteration`, persisting batch by batch."""
        self.stage = ("rollout", iteration)
        self.generators.call_all("reseed", self.cfg.run.seed * 100_003 + iteration)
        stats = JudgeStats()
        candidates: list[Candidate] = []
        start = time.perf_counter()
        stream = RolloutStream(self.cfg, self.generators, self.judges, self.rubric,
                             on_queue=self.dashboard.queue)
        with self.progress.rollout(iteration, len(self.prompts)) as bar:
            for batch in stream.run(self.prompts, iteration):
                write_batch(batch, self.run_dir, iteration)
                kill_point("rollout", iteration)
                candidates.extend(batch.candidates)
                stats.merge(batch.stats)
                bar.update(len({c.prompt_id for c in batch.candidates}))
        self._review.rolled_out()  # live review: people judge while the update runs
        engine_seconds = {(c.generator_replica, c.generation_s) for c in candidates}
        for judge in stream.tripped:
            self.console.print(f"iteration {iteration}: judge {judge} tripped its circuit "
                               f"breaker and was left out for the rest of the iteration")
        return Rollout(iteration, candidates, stats,
                       generate_s=sum(s for _, s in engine_seconds) / len(self.generators.names),
                       judge_s=time.perf_counter() - start, judges_tripped=stream.tripped)


def run_rlaif(cfg: DictConfig, console: Console | None = None) -> list[dict[str, Any]]:
    """`rlaif-ray run`: the whole loop on `cfg`; returns one metrics row per iteration."""
    return Pipeline(cfg, console).run()
