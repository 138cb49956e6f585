"""The cluster recipes as a cluster would read them: `ray up`'s YAML against the schema Ray
ships, the KubeRay RayJob checked for what a real cluster needs (an image holding this
project, storage every pod shares for run.dir, resources per group), and the GPU config's
plan placed on each recipe's nodes at their largest."""

import json
import re
import shlex
from pathlib import Path

import jsonschema
import ray
import yaml

from rlaif_ray.config import load_config
from rlaif_ray.plan import check_plan, pool_specs

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "conf/gpu-llama8b-qwen72b.yaml"


def test_ray_up_recipe_passes_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json")
                        .read_text())
    jsonschema.validate(yaml.safe_load((ROOT / "cluster" / "ray-up-gpu.yaml").read_text()),
                        schema)


def test_the_gpu_plan_fits_the_ray_up_nodes():
    recipe = yaml.safe_load((ROOT / "cluster" / "ray-up-gpu.yaml").read_text())
    types = recipe["available_node_types"]
    nodes = [types[recipe["head_node_type"]]["resources"]] + [
        {k: float(v) for k, v in t["resources"].items()}
        for name, t in types.items() if name != recipe["head_node_type"]
        for _ in range(t["max_workers"])]
    assert check_plan(pool_specs(load_config(RECIPE)), nodes) == []


def _kuberay():
    docs = list(yaml.safe_load_all((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def _pods(job):
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]


def test_kuberay_job_runs_the_projects_image_on_shared_storage():
    docs = _kuberay()
    job = docs["RayJob"]
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1)
    tag = re.search(r"docker build -f cluster/Dockerfile -t (\S+) \.", dockerfile).group(1)
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        assert all((ROOT / p).exists() for p in source.split()), source
    assert "working_dir" not in job["spec"].get("runtimeEnvYAML", "")  # in the image
    python, module, name, command, config = shlex.split(job["spec"]["entrypoint"])[:5]
    assert (python, module, name, command) == ("python", "-m", "rlaif_ray.job_entry", "run")
    assert config.startswith(workdir + "/")
    assert (ROOT / config[len(workdir) + 1:]).is_file()
    run_dir = load_config(ROOT / config[len(workdir) + 1:]).run.dir
    claim = docs["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for group in _pods(job):
        spec = group["template"]["spec"]
        volumes = {v["name"] for v in spec["volumes"]
                   if v["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]}
        for container in spec["containers"]:
            assert container["image"] == tag
            mounts = [m["mountPath"] for m in container["volumeMounts"]
                      if m["name"] in volumes]
            assert any(run_dir.startswith(m + "/") for m in mounts), (run_dir, mounts)
            env = {e["name"]: e["value"] for e in container["env"]}
            assert any(env["HF_HOME"].startswith(m + "/") for m in mounts)


def test_the_gpu_plan_fits_the_kuberay_groups():
    nodes = []
    for group in _pods(_kuberay()["RayJob"])[1:]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        custom = json.loads(json.loads(group["rayStartParams"]["resources"]))
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        nodes += [{"CPU": float(limits["cpu"]), "GPU": float(limits["nvidia.com/gpu"]),
                   **custom}] * group["maxReplicas"]
    assert check_plan(pool_specs(load_config(RECIPE)), nodes) == []
