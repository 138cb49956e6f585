"""The package's import layers, read from the source (every import, a function's lazy ones
included). Three rules hold today; the full layer order is still to come (issue 35).

Foundations (errors, storage, waits, cluster) import no other layer. The config schema is
read by the commands alone (`cli`, `cli_handlers`, `pipeline`, `judge_job`, `generate`,
`soak`, and `startup`, which they share): every layer below them takes config sections,
and its errors come from `errors`. No layer imports a command but the commands."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlaif_ray"
FOUNDATIONS = {"rlaif_ray.errors", "rlaif_ray.storage", "rlaif_ray.waits", "rlaif_ray.cluster"}
# The commands (the parser, its handlers, what they run) and the start-up they share.
COMMANDS = {"rlaif_ray.cli", "rlaif_ray.cli_handlers", "rlaif_ray.pipeline",
            "rlaif_ray.judge_job", "rlaif_ray.generate", "rlaif_ray.soak", "rlaif_ray.startup"}


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


IMPORTS = package_imports()


def test_the_reader_sees_every_module_and_its_imports():
    assert {"rlaif_ray.config", "rlaif_ray.train.ppo_update", "rlaif_ray.judge"} <= set(IMPORTS)
    assert "rlaif_ray.errors" in IMPORTS["rlaif_ray.judge.rubric"]


@pytest.mark.parametrize("module", sorted(FOUNDATIONS))
def test_foundations_import_only_foundations(module):
    assert IMPORTS[module] <= FOUNDATIONS, IMPORTS[module] - FOUNDATIONS


def test_only_the_commands_read_the_config_schema():
    readers = {m for m, imported in IMPORTS.items()
               if any(i == "rlaif_ray.config" or i.startswith("rlaif_ray.config.")
                      for i in imported) and not m.startswith("rlaif_ray.config")}
    assert readers <= COMMANDS, readers - COMMANDS


def test_no_layer_imports_a_command_but_the_commands():
    importers = {m for m, imported in IMPORTS.items() if imported & COMMANDS}
    assert importers <= COMMANDS, importers - COMMANDS
