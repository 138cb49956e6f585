"""The local multi-pool cluster (cluster/local_cluster.py), one node per pool, each with its
own model caches as nodes that share no disk: `rlaif-ray plan` against it, and runs whose
engines and trainer load their models on their own node."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif_ray.cluster import address_record, release_address_file

pytestmark = pytest.mark.slow

POOL_NODES = ("generator_gpu", "judge_gpu", "trainer_gpu")
CLI = [sys.executable, "-m", "rlaif_ray.cli"]


@pytest.fixture(scope="module")
def node_caches(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("node-caches")


@pytest.fixture(scope="module")
def cluster_address(node_caches):
    """The local cluster's address; its pool nodes' caches start empty."""
    record = address_record()  # the cluster records itself as this machine's Ray
    proc = subprocess.Popen([sys.executable, "cluster/local_cluster.py", "--node-caches",
                             str(node_caches)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    address = ""
    try:
        address = re.search(r"address: (\S+)", proc.stdout.readline()).group(1)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        release_address_file(address, record)


def client_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def test_plan_against_the_local_multi_pool_cluster(cluster_address):
    cli = CLI + ["plan", "--address", cluster_address]
    ok = subprocess.run(cli + ["conf/local_cluster.yaml"], capture_output=True, text=True,
                        env=client_env(), timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "fits the cluster" in ok.stdout and "(4 nodes)" in ok.stdout
    too_big = subprocess.run(cli + ["conf/local_cluster.yaml", "judges.0.replicas=3"],
                             capture_output=True, text=True, env=client_env(), timeout=300)
    assert too_big.returncode == 2
    assert "judge_gpu: needs 3, cluster has 2" in too_big.stderr


def run_on_cluster(address: str, run_dir: Path, *overrides: str,
                   **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        CLI + ["run", "conf/local_cluster.yaml", f"ray.address={address}", f"run.dir={run_dir}",
               "run.iterations=2", "prompts.limit=4", "generator.samples_per_prompt=4",
               "judges.0.replicas=1", *overrides],
        capture_output=True, text=True, env=client_env(**env), timeout=900)


def test_embedded_models_reach_nodes_that_lack_them(cluster_address, node_caches,
                                                    model_cache, tmp_path):
    """The driver's cache has the built models, the pool nodes' caches nothing: each process
    writes the driver's build into its node's cache and loads it from there, so the run
    learns on nodes that never built a model (tiny-judge's build alone takes minutes)."""
    done = run_on_cluster(cluster_address, tmp_path / "run", RLAIF_RAY_CACHE=model_cache)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["iteration"] for r in rows] == [0, 1]
    needs = {"generator_gpu": ["tiny-llama"], "trainer_gpu": ["tiny-llama"],
             "judge_gpu": ["tiny-judge"]}
    for node, models in needs.items():
        built = sorted(p.name for p in (node_caches / node).iterdir() if p.is_dir()
                       and not p.name.startswith("."))
        assert built == models, (node, built)  # only what its processes load, nothing half
        for name in models:
            ours, theirs = Path(model_cache) / name, node_caches / node / name
            assert sorted(p.name for p in theirs.iterdir()) == sorted(
                p.name for p in ours.iterdir())
            for item in ours.iterdir():  # the driver's bytes, not a build of the node's own
                assert (theirs / item.name).read_bytes() == item.read_bytes(), item.name


def fake_hub_cache(hf_home: Path, repo_id: str, model_dir: Path) -> None:
    """`model_dir` as hub id `repo_id` in a Hugging Face cache, as a download leaves it."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_model_missing_on_a_node_stops_the_run_naming_key_model_and_node(
        cluster_address, model_cache, tmp_path):
    """A hub id in the driver's Hugging Face cache only: the run stops at start-up with an
    error that names the config key, the model and the node, not a download attempt."""
    hf_home = tmp_path / "driver-hf"
    fake_hub_cache(hf_home, "local/tiny-llama", Path(model_cache) / "tiny-llama")
    done = run_on_cluster(cluster_address, tmp_path / "run", "generator.model=local/tiny-llama",
                          RLAIF_RAY_CACHE=model_cache, HF_HOME=str(hf_home),
                          HF_HUB_OFFLINE="1")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.search(r"error: ReplicaStartError: generator-0 failed to start: ModelNotOnNode: "
                     r"generator\.model 'local/tiny-llama' is a hub id that is not in the "
                     r"local Hugging Face cache.*, on node \d+\.\d+\.\d+\.\d+",
                     done.stderr), done.stdout[-3000:] + done.stderr[-3000:]
