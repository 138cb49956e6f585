"""The package's import layers, read from the source (every import, a function's lazy ones
included): each module belongs to one layer, and imports only its own layer and the ones
below it. docs/architecture.md describes the layers; a new module must be placed in one.

From the bottom: foundations (errors, storage, bounded waits, joining Ray, the fault seam),
records (prompts, record schemas and statuses, Parquet parts), the judging and training
logic (pure: rubric, votes, ensembles, rewards, review; PPO math, estimators, experience,
loss, update, checkpoints, weight-sync formats), models (tiny-model builders, where an
engine finds its model, engine construction), actors (the replicas, judges, generators and
the trainer's workers and fit), orchestration (the rollout stream, weight delivery, an
iteration's records, metrics, console, plan, jobs), commands (the config schema and every
command, with the start-up they share)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rlaif_ray"

LAYERS: list[tuple[str, set[str]]] = [
    ("foundations", {"rlaif_ray.errors", "rlaif_ray.storage", "rlaif_ray.waits",
                     "rlaif_ray.file_lock", "rlaif_ray.cluster", "rlaif_ray.resources",
                     "rlaif_ray.faults", "rlaif_ray.registry",
                     "rlaif_ray.replica_resources"}),
    ("records", {"rlaif_ray.data"}),
    ("judging and training logic", {
        "rlaif_ray.judge", "rlaif_ray.judge.rubric", "rlaif_ray.judge.votes",
        "rlaif_ray.judge.voting", "rlaif_ray.judge.ensemble", "rlaif_ray.judge.rules",
        "rlaif_ray.judge.reward", "rlaif_ray.judge.stats", "rlaif_ray.judge.cost",
        "rlaif_ray.judge.verdicts", "rlaif_ray.review", "rlaif_ray.judge.pairs",
        "rlaif_ray.judge.modes", "rlaif_ray.judge.items",
        "rlaif_ray.train", "rlaif_ray.sync", "rlaif_ray.lora"}),
    ("models", {"rlaif_ray.tiny_judge", "rlaif_ray.models", "rlaif_ray.model_source",
                "rlaif_ray.vllm_engine", "rlaif_ray.export"}),
    ("actors", {"rlaif_ray.replicas", "rlaif_ray.judge.llm_judge", "rlaif_ray.judge.http_judge",
                "rlaif_ray.judge.pools", "rlaif_ray.rollout", "rlaif_ray.train.exchange",
                "rlaif_ray.train.worker", "rlaif_ray.train.worker_config",
                "rlaif_ray.train.trainer", "rlaif_ray.sync.transports"}),
    ("orchestration", {"rlaif_ray.rollout.stream",
                       "rlaif_ray.iteration", "rlaif_ray.metrics", "rlaif_ray.console",
                       "rlaif_ray.plan", "rlaif_ray.jobs", "rlaif_ray.review.server",
                       "rlaif_ray.tracking"}),
    ("commands", {"rlaif_ray", "rlaif_ray.config", "rlaif_ray.startup", "rlaif_ray.pipeline",
                  "rlaif_ray.judge_job", "rlaif_ray.generate", "rlaif_ray.soak",
                  "rlaif_ray.cli_handlers", "rlaif_ray.cli",
                  "rlaif_ray.job_entry"}),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports."""
    imports = {}
    for path in PACKAGE.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                if node.module == "rlaif_ray":  # `from rlaif_ray import config`
                    found.update(f"rlaif_ray.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        imports[module_name(path)] = {m for m in found if m.startswith("rlaif_ray.")}
    return imports


def layer_of(module: str) -> int | None:
    """The layer of `module`: the one naming it, or its closest named package."""
    best: tuple[int, int] | None = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                    best is None or len(name) > best[1]):
                best = (index, len(name))
    return None if best is None else best[0]


IMPORTS = package_imports()


def test_the_reader_sees_every_module_and_its_imports():
    assert {"rlaif_ray.config", "rlaif_ray.train.ppo_update", "rlaif_ray.judge"} <= set(IMPORTS)
    assert "rlaif_ray.errors" in IMPORTS["rlaif_ray.judge.rubric"]


def test_every_module_has_a_layer():
    assert [m for m in IMPORTS if layer_of(m) is None] == []


@pytest.mark.parametrize("index", range(len(LAYERS)), ids=[name for name, _ in LAYERS])
def test_a_layer_imports_only_itself_and_the_layers_below(index):
    upward = sorted(f"{module} -> {imported} ({LAYERS[layer_of(imported)][0]})"
                    for module, imported_set in IMPORTS.items() if layer_of(module) == index
                    for imported in imported_set if (layer_of(imported) or 0) > index)
    assert upward == []


def test_the_layer_order_can_fail():
    """The rule catches an upward import (a records module reading the config schema)."""
    assert layer_of("rlaif_ray.config.schema") > layer_of("rlaif_ray.data.records")
    assert layer_of("rlaif_ray.judge.pools") > layer_of("rlaif_ray.judge.rubric")
