"""`rlaif-ray plan`: the resource plan per pool, checked against a cluster or none."""

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from rlaif_ray.cli import main
from rlaif_ray.config import load_config
from rlaif_ray.plan import check_plan, pool_specs, totals

GPU_RECIPE = "conf/gpu-llama8b-qwen72b.yaml"


def test_gpu_recipe_plan_has_a_pool_per_role():
    specs = pool_specs(load_config(GPU_RECIPE))
    assert [s.name for s in specs] == ["generator", "judge-qwen72b", "trainer"]
    assert totals(specs)["GPU"] == 8 + 4 * 4 + 8


def test_plan_reports_what_a_cluster_lacks():
    specs = pool_specs(load_config(GPU_RECIPE))
    nodes = [{"CPU": 192.0, "GPU": 8.0, "generator_gpu": 8.0},
             {"CPU": 192.0, "GPU": 8.0, "trainer_gpu": 8.0}]
    problems = check_plan(specs, nodes)
    assert any("pool 'judge-qwen72b'" in p and "judge_gpu: needs 16, cluster has 0" in p
               for p in problems)
    assert any("all pools together need GPU=32; the cluster has 16" in p for p in problems)
    fitting = nodes + [{"CPU": 192.0, "GPU": 8.0, "judge_gpu": 8.0}] * 2
    assert check_plan(specs, fitting) == []


def test_plan_command_without_cluster(capsys):
    assert main(["plan", "conf/default.yaml"]) == 0
    out = capsys.readouterr().out
    assert "generator" in out and "judge-tiny" in out and "trainer" in out
    assert "not checked against a cluster" in out


# One GPU shared by every pool, as test_gpu.py runs it: fractions that add up to one.
ONE_GPU = ["generator.resources.num_gpus=0.4", "judges.0.resources.num_gpus=0.1",
           "trainer.use_gpu=true", "trainer.resources.num_gpus=0.5"]


def test_fractional_gpus_stay_fractions_and_fit_one_gpu():
    specs = pool_specs(load_config("conf/default.yaml", ONE_GPU))
    assert [s.bundle.get("GPU") for s in specs] == [0.4, 0.1, 0.5]
    assert check_plan(specs, [{"CPU": 8.0, "GPU": 1.0}]) == []
    whole = pool_specs(load_config("conf/default.yaml", ["trainer.use_gpu=true",
                                                         "trainer.resources.num_gpus=0"]))
    assert whole[-1].bundle["GPU"] == 1.0  # no share given: one GPU
    cpu = pool_specs(load_config("conf/default.yaml", ["trainer.resources.num_gpus=1"]))
    assert "GPU" not in cpu[-1].bundle  # use_gpu=false asks for none


PLACE_ON_ONE_GPU = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from rlaif_ray.cluster import reserve_pool
from rlaif_ray.config import load_config
from rlaif_ray.plan import pool_specs

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 8, "num_gpus": 1})
ray.init(address=cluster.address)
try:
    pools = [reserve_pool(s, timeout_s=60) for s in pool_specs(load_config(
        "conf/default.yaml", json.loads(sys.argv[1])))]
    print("placed", [p.spec.name for p in pools], ray.available_resources().get("GPU", 0))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.slow
def test_fractional_gpu_pools_are_placed_together_on_a_one_gpu_node(tmp_path):
    """Placement only, on a simulated node with one GPU: its own Ray, in a process session
    of its own (output to a file: Ray's agents that outlive the script would hold a pipe
    open for minutes; the session is killed after)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "place.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", PLACE_ON_ONE_GPU, json.dumps(ONE_GPU)],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        code = proc.wait(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 0, log.read_text()[-3000:]
    assert "placed ['generator', 'judge-tiny', 'trainer'] 0" in log.read_text()
