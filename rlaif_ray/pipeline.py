"""The RLAIF iteration loop (sync mode): generate -> judge -> vote -> dataset -> PPO ->
weight sync, `run.iterations` times. Every stage's output is persisted before the next
starts, and every iteration appends one line to `run.dir/metrics.jsonl`."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from safetensors.torch import load_file
from tqdm import tqdm

from rlaif_ray.cluster import connect
from rlaif_ray.config import ConfigError, to_yaml
from rlaif_ray.data.prompts import load_prompts
from rlaif_ray.data.stream import JudgeStream, write_batch
from rlaif_ray.judge.pools import start_judges
from rlaif_ray.judge.review import merged_verdicts, standing
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.stats import JudgeStats
from rlaif_ray.models import resolve_model
from rlaif_ray.rollout.pool import GeneratorPool
from rlaif_ray.sync.payload import from_payload
from rlaif_ray.sync.probe import probe_token_ids
from rlaif_ray.train.checkpoints import latest_checkpoint
from rlaif_ray.train.samples import confidence_floor, training_samples
from rlaif_ray.train.trainer import TrainerRun
from rlaif_ray.train.worker import POLICY_FILE


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


class Pipeline:
    """Owns the pools and the trainer of one run."""

    def __init__(self, cfg: DictConfig, console: Console | None = None) -> None:
        if not cfg.judges:
            raise ConfigError("key 'judges' must list at least one judge to train with")
        self.cfg = cfg
        self.console = console or Console()
        self.rubric = Rubric.from_config(cfg.rubric)
        self.prompts = load_prompts(cfg.prompts.path, cfg.prompts.limit)
        self.run_dir = Path(cfg.run.dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.checkpoint = latest_checkpoint(self.run_dir)
        if not cfg.run.resume and (self.checkpoint or self.metrics_path.exists()):
            raise ConfigError(f"run.dir {self.run_dir} already holds a run: continue it with "
                              f"run.resume=true, or choose another run.dir")
        self.start = self.checkpoint[1] + 1 if cfg.run.resume and self.checkpoint else 0

    def _trim_to_checkpoint(self) -> None:
        """Drop what iterations after the checkpoint left behind (they run again)."""
        for path in (self.run_dir / "data").glob("iter=*"):
            if int(path.name.removeprefix("iter=")) >= self.start:
                shutil.rmtree(path)
        if self.metrics_path.exists():
            rows = [line for line in self.metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["iteration"] < self.start]
            self.metrics_path.write_text("".join(row + "\n" for row in rows))

    def run(self) -> list[dict[str, Any]]:
        """Run every iteration; returns the metrics rows."""
        from transformers import AutoTokenizer

        cfg = self.cfg
        model_path = resolve_model(cfg.generator.model, cfg.cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        connect(cfg.ray)
        resume_dir = str(self.checkpoint[0]) if self.start else None
        if self.start:
            self.console.print(f"resuming {self.run_dir} at iteration {self.start}")
            self._trim_to_checkpoint()
        with self.console.status("starting generators, judges and trainer"):
            generators = GeneratorPool.from_config(cfg, model_path)
            judges = []
            trainer = None
            try:
                if self.start:
                    generators.update_weights(load_file(self.checkpoint[0] / POLICY_FILE),
                                              self.start)
                judges = start_judges(cfg)
                trainer = TrainerRun(cfg, model_path, probe_token_ids(tokenizer),
                                     tokenizer.pad_token_id, resume_dir)
            except BaseException:
                self._shutdown(generators, judges, trainer)
                raise
        history = []
        try:
            for iteration in range(self.start, cfg.run.iterations):
                row = self._iteration(iteration, generators, judges, trainer)
                history.append(row)
                with self.metrics_path.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                self.console.print(
                    f"iter {iteration}: reward {row['reward_mean']:.3f} kept "
                    f"{row['kept_fraction']:.2f} kl {row['kl']:.4f} logprob_gap "
                    f"{row['logprob_gap']:.4f} sync {row['sync_s']:.2f}s "
                    f"(probe gap {row['sync_probe_gap']:.2e})")
        finally:
            self._shutdown(generators, judges, trainer)
        return history

    @staticmethod
    def _shutdown(generators, judges, trainer) -> None:
        if trainer is not None:
            trainer.close()
        for judge in judges:
            judge.shutdown()
        generators.shutdown()

    def _iteration(self, iteration: int, generators: GeneratorPool, judges: list,
                   trainer: TrainerRun) -> dict[str, Any]:
        cfg = self.cfg
        start = time.perf_counter()
        generators.call_all("reseed", cfg.run.seed * 100_003 + iteration)
        stats = JudgeStats()
        candidates: list[dict[str, Any]] = []
        stream = JudgeStream(cfg, generators, judges, self.rubric)
        with tqdm(total=len(self.prompts), desc=f"iter {iteration} generate+judge",
                  unit="prompt", leave=False) as bar:
            for batch in stream.run(self.prompts, iteration):
                write_batch(batch, self.run_dir, iteration)
                candidates.extend(batch.candidates)
                stats.merge(batch.stats)
                bar.update(len({c["prompt_id"] for c in batch.candidates}))
        judged = time.perf_counter()
        verdicts = merged_verdicts(self.run_dir, iteration, cfg.rubric.mode, cfg.reward.pairwise)
        rewards = [v["reward"] for v in verdicts
                   if v["item_kind"] == "response" and standing(v) and v["reward"] is not None]
        samples = training_samples(candidates, verdicts, confidence_floor(iteration,
                                                                          cfg.curriculum))
        trainer.submit(iteration, samples)
        update = trainer.update(iteration + 1)
        trained = time.perf_counter()
        sync = generators.update_weights(from_payload(update["payload"]), iteration + 1,
                                         probe=update["probe"])
        done = time.perf_counter()
        reward_mean, reward_std = _mean_std(rewards)
        train = update["metrics"]
        batch_seconds = {c["generator_replica"] + str(c["generation_s"]): c["generation_s"]
                         for c in candidates}
        summary = stats.as_dict()
        return {
            "iteration": iteration,
            "policy_version": iteration,
            "reward_mean": reward_mean,
            "reward_std": reward_std,
            "kl": train.get("kl"),
            "policy_loss": train.get("policy_loss"),
            "value_loss": train.get("value_loss"),
            "entropy": train.get("entropy"),
            "clip_fraction": train.get("clip_fraction"),
            "logprob_gap": train.get("logprob_gap"),
            "train_samples": int(train.get("samples", 0)),
            "kept_fraction": summary["kept_fraction"],
            "position_bias": summary["position_bias"],
            "abstention_rate": summary["abstention_rate"],
            "inter_judge_agreement": summary["inter_judge_agreement"],
            "tokens_generated": sum(len(c["response_token_ids"]) for c in candidates),
            "judge_votes": summary["judge_votes"],
            "generate_s": sum(batch_seconds.values()) / len(generators.names),
            "judge_s": judged - start,
            "train_s": trained - judged,
            "sync_s": done - trained,
            "sync_bytes": sync.bytes,
            "sync_probe_gap": sync.max_probe_gap,
            "iteration_s": done - start,
        }


def run_rlaif(cfg: DictConfig, console: Console | None = None) -> list[dict[str, Any]]:
    """`rlaif-ray run`: the whole loop on `cfg`; returns one metrics row per iteration."""
    return Pipeline(cfg, console).run()
