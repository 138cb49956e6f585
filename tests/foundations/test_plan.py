"""`rlaif-ray plan`: the resource plan per pool, checked against a cluster or none."""



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
