"""Experiment trackers a run logs to (`run.trackers`): TensorBoard, MLflow and Weights &
Biases, each through its library's own client. Per iteration each gets the metrics row's
numbers; MLflow and W&B also get the resolved config as parameters at the start and the
plots, summary.json and config.yaml at the end. A resumed run continues the same MLflow
run and W&B run (their ids are kept in `run.dir/tracking.json`); a submitted job tags
them with its job id. Secrets (the W&B key) come from the environment only."""

from __future__ import annotations

import json
import netrc
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from rlaif_ray.errors import ConfigError
from rlaif_ray.jobs import JOB_ID_ENV
from rlaif_ray.storage import StoragePath

TRACKERS = ("tensorboard", "mlflow", "wandb")
# Numeric per-iteration fields logged under their own names.
SCALARS = (
    "reward_mean", "reward_std", "kl", "policy_loss", "value_loss", "entropy", "clip_fraction",
    "policy_kl", "ppo_epochs_run", "generator_old_logprobs", "is_weight_mean", "logprob_gap",
    "kept_fraction", "position_bias", "length_bias", "tokens_generated",
    "judge_votes", "generate_s", "judge_s", "train_s", "sync_s", "iteration_s",
    "policy_lag_max", "human_verdicts", "human_lag",
)
# Per-key numbers, logged as `<group>/<key>`: (the row's field, its group).
NESTED_SCALARS = (("abstention_rate", "abstention_rate"), ("dimension_scores", "dimension_score"),
                  ("judge_human_agreement", "judge_human_agreement"))
REACH_TIMEOUT_S = 15.0  # how long the start-up check waits for a tracking server


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row's numbers, nested ones as `group/key` (e.g. `dimension_score/safety`)."""
    out = {name: float(row[name]) for name in SCALARS
           if isinstance(row.get(name), (int, float)) and not isinstance(row[name], bool)}
    for field, group in NESTED_SCALARS:
        for key, value in (row.get(field) or {}).items():
            if value is not None:
                out[f"{group}/{key}"] = float(value)
    return out


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys -> values (text), as trackers take parameters."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}", item)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return flat


class Tracker(Protocol):
    """One tracker's side of a run (`run_id`: what a resumed run continues, if anything)."""

    run_id: str | None

    def log(self, row: dict[str, Any]) -> None:
        """Log one iteration's metrics row."""

    def finish(self, files: list[Path], failed: bool) -> None:
        """Attach the run's end files (local copies) and close."""


class TensorBoardTracker:
    """Event files in `run.dir/tensorboard/`. For a run.dir on an object store they are
    written to a local scratch directory and uploaded after each iteration."""

    run_id: str | None = None

    def __init__(self, run_dir: StoragePath) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.events = (Path((run_dir / "tensorboard").path) if run_dir.is_local else
                       Path(tempfile.mkdtemp(prefix="rlaif-tensorboard-")))
        self.writer = SummaryWriter(str(self.events))

    def log(self, row: dict[str, Any]) -> None:
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, row["iteration"])
        self.writer.flush()
        if not self.run_dir.is_local:
            (self.run_dir / "tensorboard").upload(self.events)

    def finish(self, files: list[Path], failed: bool) -> None:
        self.writer.close()
        if not self.run_dir.is_local:
            shutil.rmtree(self.events, ignore_errors=True)


class MlflowTracker:
    """One MLflow run per rlaif-ray run, through `mlflow.MlflowClient`: the tracking URI
    from `MLFLOW_TRACKING_URI` or `tracking.mlflow.uri`, the experiment from
    `tracking.mlflow.experiment`."""

    def __init__(self, cfg: DictConfig, run_dir: StoragePath, run_id: str | None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=mlflow_uri(cfg))
        if run_id is None:
            name = cfg.tracking.mlflow.experiment
            found = self.client.get_experiment_by_name(name)
            experiment = found.experiment_id if found else self.client.create_experiment(name)
            run = self.client.create_run(experiment, run_name=run_dir.name, tags=job_tags())
            run_id = run.info.run_id
            params = [Param(k, v[:6000]) for k, v in flat_params(cfg).items()]
            for start in range(0, len(params), 100):  # MLflow takes 100 params a batch
                self.client.log_batch(run_id, params=params[start:start + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.mlflow_run: str = run_id
        self.run_id: str | None = run_id

    def log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k.replace("/", "."), v, now, row["iteration"])
                   for k, v in scalars(row).items()]
        self.client.log_batch(self.mlflow_run, metrics=metrics)

    def finish(self, files: list[Path], failed: bool) -> None:
        for file in files:
            self.client.log_artifact(self.mlflow_run, str(file),
                                     artifact_path="plots" if file.suffix == ".png" else None)
        self.client.set_terminated(self.mlflow_run, status="FAILED" if failed else "FINISHED")


class WandbTracker:
    """One W&B run per rlaif-ray run (`wandb.init` with a kept id, `resume="allow"`):
    project and entity from `tracking.wandb` or `WANDB_PROJECT` / `WANDB_ENTITY`;
    `WANDB_MODE=offline` works with no network. Its local files go to `run.dir/wandb/` (a
    scratch directory for a run.dir on an object store)."""

    def __init__(self, cfg: DictConfig, run_dir: StoragePath, run_id: str | None) -> None:
        import wandb

        # Local run.dirs keep W&B's files (`wandb sync run.dir/wandb/offline-run-*`).
        self.scratch = (Path(run_dir.path) if run_dir.is_local else
                        Path(tempfile.mkdtemp(prefix="rlaif-wandb-")))
        self.run = wandb.init(
            project=cfg.tracking.wandb.project or os.environ.get("WANDB_PROJECT"),
            entity=cfg.tracking.wandb.entity or os.environ.get("WANDB_ENTITY"),
            id=run_id, resume="allow", name=run_dir.name,
            config=flat_params(cfg), tags=list(job_tags().values()), dir=str(self.scratch),
            settings=wandb.Settings(silent=True, console="off"), reinit="create_new")
        self.run_id: str | None = self.run.id
        self.scratch_only = not run_dir.is_local

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(scalars(row), step=row["iteration"])

    def finish(self, files: list[Path], failed: bool) -> None:
        import wandb

        outputs = wandb.Artifact(f"{self.run.name}-outputs", type="run-outputs")
        for file in files:
            if file.suffix == ".png":
                self.run.log({f"plots/{file.stem}": wandb.Image(str(file))})
            outputs.add_file(str(file))
        if files:
            self.run.log_artifact(outputs)
        self.run.finish(exit_code=1 if failed else 0)
        if self.scratch_only:
            shutil.rmtree(self.scratch, ignore_errors=True)


def mlflow_uri(cfg: DictConfig) -> str | None:
    """Where MLflow tracks: `MLFLOW_TRACKING_URI`, else `tracking.mlflow.uri` (None: the
    library's default, ./mlruns)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.mlflow.uri


def job_tags() -> dict[str, str]:
    """Tags naming the Ray job this run is (none outside `rlaif-ray submit`)."""
    job = os.environ.get(JOB_ID_ENV)
    return {"ray_job_id": job} if job else {}


def _netrc_key() -> bool:
    """Whether `wandb login` left a key in ~/.netrc (where W&B keeps it)."""
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _unreachable(cfg: DictConfig, name: str) -> str | None:
    """Why tracker `name` cannot be used (None: it can)."""
    try:
        if name == "mlflow":
            from mlflow import MlflowClient

            uri = mlflow_uri(cfg)
            if uri and uri.startswith(("http://", "https://")):
                import requests

                requests.get(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S)
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        elif name == "wandb":
            import wandb  # noqa: F401 - installed?

            mode = os.environ.get("WANDB_MODE", "online")
            if mode not in ("offline", "disabled") and not (
                    os.environ.get("WANDB_API_KEY") or _netrc_key()):
                return "no W&B key: set WANDB_API_KEY (or WANDB_MODE=offline)"
    except ImportError as err:
        return f"{err.name} is not installed (pip install {name})"
    except Exception as err:  # noqa: BLE001 - any failure to reach it is the answer
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def check_trackers(cfg: DictConfig, warn: Any = print) -> list[str]:
    """The trackers a run will use: each of `run.trackers` checked before Ray starts. One
    that cannot be used stops the run (`ConfigError`), or with `tracking.required: false`
    is left out with a warning."""
    usable = []
    for name in cfg.run.trackers:
        problem = None if name == "tensorboard" else _unreachable(cfg, name)
        if problem is None:
            usable.append(name)
        elif cfg.tracking.required:
            raise ConfigError(f"key 'run.trackers': {name} cannot be used: {problem} "
                              "(tracking.required=false runs without it)")
        else:
            warn(f"warning: tracker {name} left out: {problem}")
    return usable


class TrackerSet:
    """The run's trackers: started (or continued, on resume) together, logged together,
    finished together."""

    def __init__(self, cfg: DictConfig, run_dir: StoragePath, names: list[str]) -> None:
        self.state_path = run_dir / "tracking.json"
        state = json.loads(self.state_path.read_text()) if (
            cfg.run.resume and self.state_path.is_file()) else {}
        self.trackers: dict[str, Tracker] = {}
        for name in names:
            if name == "tensorboard":
                self.trackers[name] = TensorBoardTracker(run_dir)
            elif name == "mlflow":
                self.trackers[name] = MlflowTracker(cfg, run_dir, state.get("mlflow_run_id"))
            else:
                self.trackers[name] = WandbTracker(cfg, run_dir, state.get("wandb_run_id"))
        ids = {f"{n}_run_id": t.run_id for n, t in self.trackers.items()
               if t.run_id is not None}
        if ids:
            self.state_path.write_text(json.dumps(ids))

    def log(self, row: dict[str, Any]) -> None:
        """Log one iteration's row to every tracker."""
        for tracker in self.trackers.values():
            tracker.log(row)

    def finish(self, files: list[StoragePath], failed: bool) -> None:
        """Attach `files` (local or on the object store) and close every tracker."""
        with tempfile.TemporaryDirectory(prefix="rlaif-artifacts-") as scratch:
            local = []
            for file in files:
                if file.exists():
                    target = Path(scratch) / file.name
                    target.write_bytes(file.read_bytes())
                    local.append(target)
            for tracker in self.trackers.values():
                tracker.finish(local, failed)
