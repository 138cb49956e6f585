"""A model as every node of the cluster finds it.

The driver resolves `generator.model` and `judges[].model` on its own disk, but the engines
and the trainer's workers load them on theirs, and a cluster's nodes need not share a disk
(KubeRay pods, cloud VMs). An embedded model therefore travels with the run: every process
loads it from its own node's cache (config `cache_dir`, else that node's `$RLAIF_RAY_CACHE`,
else its user cache dir), and when that cache lacks the exact build (by the file digests of
its BUILD.json) it first writes the driver's files there, read by a Ray task on the
driver's node. A run whose nodes share the driver's cache (one machine, a shared
filesystem) copies nothing and starts no task. Nothing is rebuilt on a node: every process
loads the driver's bytes. A local directory or a hub id is not shipped (it can be hundreds
of GB): it must be on every node, and a node without it stops its actor with an error
naming the config key, the model and the node."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rlaif_ray.models import (
    BUILD_RECORD,
    TINY_MODELS,
    cache_dir,
    locked,
    model_problem,
    resolve_model,
)
from rlaif_ray.storage import replacing_dir

FETCH_TIMEOUT_S = 600.0  # one embedded model's files (MBs; the 100M bench model 0.3 GB)


class ModelNotOnNode(RuntimeError):
    """A process cannot find its model on the node it runs on."""


@dataclass(frozen=True)
class ModelSource:
    """Where a process finds a model: `path` on the driver (a directory or a hub id), named
    by the config key `key` in errors; for an embedded build, the digest of its files, the
    driver's node (hex id) that can read them, and the config's `cache_dir`."""

    key: str
    path: str
    build: str | None = None
    driver_node: str | None = None
    cache_dir: str | None = None


def read_build(build: str, path: str) -> dict[str, bytes]:
    """The files of embedded build `build` in directory `path` (run on the driver's node:
    the result travels to the caller through the object store)."""
    model_dir = Path(path)
    if build_digest(model_dir) != build:
        raise ModelNotOnNode(f"the driver's build {model_dir} changed during the run")
    return {item.name: item.read_bytes() for item in sorted(model_dir.iterdir())
            if item.is_file()}


def build_digest(model_dir: Path) -> str | None:
    """The digest of an embedded build's files (from its BUILD.json); None when `model_dir`
    is not one."""
    record = model_dir / BUILD_RECORD
    if not record.is_file():
        return None
    files = json.loads(record.read_text())["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def model_source(model: str, key: str, cache: str | None = None) -> ModelSource:
    """The source of config value `model` at `key` (Ray connected): an embedded model is
    built here (once), for each node's cache `cache` (config `cache_dir`; None: each node's
    own); a directory or a hub id is described by its path on the driver. A directory is
    never taken for an embedded build, even one holding a BUILD.json (an exported policy, a
    copy with other weights)."""
    import ray

    path = resolve_model(model, cache)
    if model not in TINY_MODELS:
        return ModelSource(key, path)
    return ModelSource(key, path, build_digest(Path(path)),
                       ray.get_runtime_context().get_node_id(), cache)


def local_model_path(source: ModelSource) -> str:
    """`source`'s model on this node: an embedded build in this node's cache (written there
    from the driver's files unless the cache holds that build already), else the driver's
    path (a directory or a hub id), which must be on this node too."""
    if source.build is None:
        problem = model_problem(source.path)
        if problem:
            raise ModelNotOnNode(f"{source.key} {source.path!r} {problem}, on node "
                                 f"{_node_ip()}: every node loads the model from its own "
                                 "disk (use a filesystem every node mounts)")
        return source.path
    model_dir = cache_dir(source.cache_dir) / Path(source.path).name
    if build_digest(model_dir) == source.build:
        return str(model_dir)
    return str(_materialize(source, model_dir))


def _materialize(source: ModelSource, model_dir: Path) -> Path:
    """Write the driver's files of `source` as `model_dir` (once per node and build: the
    model's lock serialises the processes of a node)."""
    import ray

    with locked(model_dir):
        if build_digest(model_dir) == source.build:
            return model_dir
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        on_driver = NodeAffinitySchedulingStrategy(source.driver_node, soft=False)
        files = ray.remote(read_build).options(num_cpus=0, scheduling_strategy=on_driver)
        with replacing_dir(model_dir) as staging:
            for name, data in ray.get(files.remote(source.build, source.path),
                                      timeout=FETCH_TIMEOUT_S).items():
                (staging / name).write_bytes(data)
    return model_dir


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address() if ray.is_initialized() else "(no Ray)"
