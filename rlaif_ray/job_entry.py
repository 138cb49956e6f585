"""The entrypoint of a submitted job (`python -m rlaif_ray.job_entry COMMAND ...`): checks,
with the standard library only, that the cluster's interpreter has the packages a run
needs, and says so in one line when it does not; then runs `rlaif-ray COMMAND ...`.

The job's working dir carries this project's code but not its dependencies: a head whose
`python` lacks them would otherwise fail deep in an import traceback."""

from __future__ import annotations

import importlib.util
import sys

REQUIRED = ("omegaconf", "ray", "torch", "transformers", "vllm", "deepspeed", "pyarrow")


def missing_packages(names: tuple[str, ...] = REQUIRED) -> list[str]:
    """The packages of `names` this interpreter cannot import."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def main() -> None:
    """Run `rlaif-ray` with this process's arguments, or exit 2 naming what is missing."""
    missing = missing_packages()
    if missing:
        print(f"error: the cluster's interpreter {sys.executable} lacks "
              f"{', '.join(missing)}: install rlaif-ray in the nodes' environment, or "
              f"submit with --python naming an interpreter that has it", file=sys.stderr)
        sys.exit(2)
    from rlaif_ray.cli import console_main

    console_main()


if __name__ == "__main__":
    main()
