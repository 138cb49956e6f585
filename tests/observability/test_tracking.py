"""Trackers: what each iteration logs, the config as parameters, the start-up check of a
tracker that cannot be reached, and a real run (then resumed) logged to MLflow (a file
store) and W&B (offline) with the key never written down."""

import json

import pytest
from toy import toy_args

from rlaif_ray.config import ConfigError, default_config_path, load_config
from rlaif_ray.tracking import check_trackers, flat_params, scalars


def test_a_row_logs_its_numbers_with_nested_ones_grouped():
    row = {"iteration": 2, "reward_mean": 0.5, "kl": None, "train_samples": 8,
           "human_verdicts": 1, "abstention_rate": {"tiny-judge": 0.25, "rules": None},
           "dimension_scores": {"safety": 9.0}, "judge_usage": {"x": {"votes": 3}}}
    assert scalars(row) == {"reward_mean": 0.5, "human_verdicts": 1.0,
                            "abstention_rate/tiny-judge": 0.25,
                            "dimension_score/safety": 9.0}


def test_the_config_flattens_to_dotted_parameters():
    params = flat_params(load_config(default_config_path(), ["trainer.actor_lr=0.001"]))
    assert params["trainer.actor_lr"] == "0.001"
    assert params["judges.0.model"] == "tiny-judge"
    assert params["run.trackers"] == '["tensorboard"]'
    assert all(isinstance(v, str) for v in params.values())


def test_an_unknown_tracker_is_named_with_the_choices():
    with pytest.raises(ConfigError, match=r"run.trackers.1.*tensorboard, mlflow, wandb"):
        load_config(default_config_path(), ["run.trackers=[tensorboard,comet]"])


def test_a_tracker_that_cannot_be_reached_stops_the_run_or_is_left_out(monkeypatch):
    from watch import free_ports

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_ports(1)[0]}")
    cfg = load_config(default_config_path(), ["run.trackers=[tensorboard,mlflow]"])
    with pytest.raises(ConfigError, match="run.trackers': mlflow cannot be used: "
                                          "ConnectionError"):
        check_trackers(cfg)
    warnings = []
    cfg.tracking.required = False
    assert check_trackers(cfg, warnings.append) == ["tensorboard"]
    assert warnings and warnings[0].startswith("warning: tracker mlflow left out")


def test_wandb_needs_a_key_unless_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a stored key
    monkeypatch.setenv("WANDB_MODE", "online")
    cfg = load_config(default_config_path(), ["run.trackers=[wandb]"])
    with pytest.raises(ConfigError, match="no W&B key: set WANDB_API_KEY"):
        check_trackers(cfg)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert check_trackers(cfg) == ["wandb"]


SECRET = "wandbsecret" + "4f1c9e7a" * 4  # a key's length, 40+


@pytest.mark.slow
def test_a_run_and_its_resume_log_to_one_mlflow_and_one_wandb_run(ray_session, model_cache,
                                                                   tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from rlaif_ray.pipeline import run_rlaif

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # a file store: no server to run here
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("RLAIF_RAY_JOB_ID", "rlaif-run-20261207-000000")  # as `submit` sets
    run_dir = tmp_path / "run"
    args = toy_args(model_cache, run_dir, 2)
    trackers = "run.trackers=[tensorboard,mlflow,wandb]"
    run_rlaif(load_config(args[0], args[1:] + [trackers]))
    ids = json.loads((run_dir / "tracking.json").read_text())
    run_rlaif(load_config(args[0], args[1:] + [trackers, "run.iterations=3", "run.resume=true"]))
    assert json.loads((run_dir / "tracking.json").read_text()) == ids  # continued, not new

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(ids["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["generator.model"] == "tiny-llama"
    assert run.data.tags["ray_job_id"] == "rlaif-run-20261207-000000"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "reward_mean")]
    assert steps == [0, 1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "plots"} <= artifacts
    assert "plots/reward.png" in {a.path for a in client.list_artifacts(run.info.run_id,
                                                                        "plots")}
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{ids['wandb_run_id']}"))
    assert len(offline) == 2  # the run and its resume, one W&B run id
    assert (run_dir / "tensorboard").is_dir()
    for path in run_dir.rglob("*"):  # the key is in no file the run wrote
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
