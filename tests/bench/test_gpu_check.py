"""The GPU check script (`make gpu-check`) on the CPU: the same PPO update and broadcast code
a lent GPU runs (over gloo here), so the script is ready when a device is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_runs_its_parts_on_the_cpu(model_cache, tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--device", "cpu",
                           "--cache", model_cache, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    update, broadcast = report["ppo_update"], report["broadcast"]
    assert update["ok"] and update["weights_moved_max"] > 0 and update["zero_stage"] == 2
    assert broadcast["ok"] and broadcast["backend"] == "gloo" and broadcast["tensors"] > 10
    assert "ppo_update: ok" in done.stdout and "broadcast: ok" in done.stdout
