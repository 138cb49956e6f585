"""The driver's modules load without torch: the CLI answers quickly, and `run` imports torch
only while Ray starts (it needs it once it starts the trainer and handles weights)."""

from __future__ import annotations

import subprocess
import sys

BLOCK_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"the driver imported {name}")

sys.meta_path.insert(0, NoTorch())
import rlaif_ray.cli, rlaif_ray.pipeline, rlaif_ray.config  # noqa: E401
print("ok")
"""


def test_the_cli_loads_without_ray():
    """`submit` sets Ray's auth mode (RAY_AUTH_MODE=token) before Ray reads it, at import."""
    done = subprocess.run([sys.executable, "-c", "import sys, rlaif_ray.cli; "
                           "print('ray' in sys.modules)"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_cli_and_pipeline_import_without_torch():
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"

