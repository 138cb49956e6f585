"""Shared fixtures: one embedded-model cache, one local Ray, one generator pool per session."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest

# Ray 2.60 uses token auth, and a process reads RAY_AUTH_MODE once, when Ray first needs it.
# Set it before anything imports Ray, with a token on disk (what a first local `ray.init`
# makes), so every Ray the tests start and every in-process client agree in any test order.
_TOKEN = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
if not _TOKEN.exists():
    _TOKEN.parent.mkdir(parents=True, exist_ok=True)
    _TOKEN.write_text(secrets.token_hex(32))
    _TOKEN.chmod(0o600)
os.environ["RAY_AUTH_MODE"] = "token"

# A shell starts a background job (`pytest ... &`) with SIGINT ignored, and an ignored signal
# stays ignored in every child: the runs the Ctrl-C tests interrupt would never see it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TEST_CPUS = 4  # logical CPUs offered to pools; engines take fractions


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """A model cache shared by the whole session (built once)."""
    path = os.environ.get("RLAIF_RAY_TEST_CACHE") or str(tmp_path_factory.mktemp("models"))
    os.environ["RLAIF_RAY_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def policy_path(model_cache) -> str:
    from rlaif_ray.models import build_model

    return str(build_model("tiny-llama", model_cache))


@pytest.fixture(scope="session")
def default_judge(model_cache) -> str:
    """The default config's judge (`tiny-judge`), built once, before the first slow test:
    its first build takes minutes, which no run's own waits should have to absorb."""
    from rlaif_ray.models import build_model

    return str(build_model("tiny-judge", model_cache))


@pytest.fixture(autouse=True)
def _default_judge_before_slow_tests(request):
    if request.node.get_closest_marker("slow"):
        request.getfixturevalue("default_judge")


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory):
    """A real S3-compatible server (moto) for the session, with a bucket; yields the
    standard AWS environment variables that reach it, also set in this process."""
    from s3_server import create_bucket, environment, s3_server

    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as env, environment(env):
        create_bucket(env, "rlaif")
        yield env


@pytest.fixture(scope="session")
def ray_session():
    """A private local Ray for the session (never attaches to another cluster), with its
    dashboard as on a real cluster: Ray Train's placement-group cleaner of a killed driver
    asks the dashboard's state API whether its controller is gone, and without one it
    polls forever (a leaked actor for every killed run, each taking CPU from the rest of
    the suite)."""
    import ray
    from watch import free_ports

    from rlaif_ray.cluster import claim_address_file, release_address_file

    # As for a local Ray that `rlaif-ray run` starts: no preemption watcher (an actor
    # process in every fit, waiting for a cloud's drain notice that never comes here).
    os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"
    # judge_slot: a fake resource that caps how many autoscaled judge replicas fit.
    ray.init(address="local", num_cpus=TEST_CPUS, namespace="rlaif-test",
             resources={"judge_slot": 2}, include_dashboard=True,
             dashboard_host="127.0.0.1", dashboard_port=free_ports(1)[0],
             log_to_driver=False)
    # Its log monitor streams worker output to drivers, which none here shows
    # (log_to_driver=False), and polls every log file ten times a second: 4% of a core for
    # the whole session.
    ray._private.worker._global_node.kill_log_monitor()
    # As `rlaif-ray run` does for its local Ray: Ray Train's cleaners find this cluster.
    gcs = ray._private.worker.global_worker.node.gcs_address
    before = claim_address_file(gcs)
    yield ray
    ray.shutdown()
    release_address_file(gcs, before)


@pytest.fixture(scope="session")
def test_config(model_cache):
    """The default config, pointed at the session's cache, with short generations."""
    from rlaif_ray.config import load_config

    return load_config("conf/default.yaml", [f"cache_dir={model_cache}",
                                              "generator.max_tokens=16",
                                              "generator.samples_per_prompt=3"])


@pytest.fixture(scope="session")
def generator_pool(ray_session, test_config, policy_path):
    """Two generator replicas on the tiny policy. Tests that change its weights put the
    original ones back (as a newer version) before they return."""
    from rlaif_ray.cluster import PoolSpec, bundle_for, reserve_pool
    from rlaif_ray.rollout.pool import GeneratorPool

    gen = test_config.generator
    resources = reserve_pool(PoolSpec("test-generator", 2, bundle_for(gen.resources)), 60)
    pool = GeneratorPool(gen, resources, policy_path, seed=0, name="test-generator")
    yield pool
    pool.shutdown()
    resources.release()


@pytest.fixture(scope="session")
def toy_run(ray_session, model_cache, tmp_path_factory):
    """The toy task (tests/toy.py), 3 iterations, never interrupted: `(run_dir, history)`.
    Resumed runs must reproduce its rows; its policy and checkpoints are what a finished run
    leaves."""
    from toy import toy_args

    from rlaif_ray.config import load_config
    from rlaif_ray.pipeline import run_rlaif

    run_dir = tmp_path_factory.mktemp("toy") / "run"
    args = toy_args(model_cache, run_dir, 3)
    return run_dir, run_rlaif(load_config(args[0], args[1:]))


JUDGES_OVERRIDE = (
    "judges=[{name: test-qwen, kind: llm, model: tiny-qwen2, replicas: 1, batch_size: 8},"
    " {name: rules, kind: rule, checks: [{type: not_regex, pattern: '[0-9]'},"
    " {type: min_words, value: 3}]}]"
)


@pytest.fixture(scope="session")
def judge_config(test_config, tmp_path_factory):
    """Test config with an llm judge (`test-qwen`) and a rule judge."""
    from omegaconf import OmegaConf

    from rlaif_ray.config import load_config

    base = tmp_path_factory.mktemp("cfg") / "base.yaml"
    base.write_text(OmegaConf.to_yaml(test_config))
    return load_config(base, [JUDGES_OVERRIDE, "generator.batch_size=2"])


@pytest.fixture(scope="session")
def judge_pools(ray_session, judge_config):
    """The session's judge pools (one tiny-qwen2 replica, one rule judge)."""
    from rlaif_ray.judge.pools import start_judges

    pools = start_judges(judge_config)
    yield pools
    for pool in pools:
        pool.shutdown()


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where CUDA is available (`make test-gpu`); elsewhere they are
    skipped with the reason shown."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and the `gpu` extra (run `make test-gpu` "
                                   "on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
