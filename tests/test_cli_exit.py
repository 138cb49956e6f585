"""The `rlaif-ray` command's fast exit: its exit code, its output, its threads' work and the
exit hooks kept."""

import subprocess
import sys

import pytest

_COMMAND = """
import atexit, sys, threading, time
atexit.register(lambda: print("exit hook ran"))
# a thread still at work when main returns (the sleep is its work, not a synchronisation)
threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished"))).start()
from rlaif_ray.cli import console_main
sys.argv = ["rlaif-ray", *sys.argv[1:]]
console_main()
"""


@pytest.mark.parametrize(("args", "code", "out"), [
    (["config", "run.iterations=2"], 0, "iterations: 2"),
    (["config", "run.iterations=two"], 2, "run.iterations"),
])
def test_the_command_exits_with_its_code_its_output_and_the_exit_hooks(args, code, out):
    done = subprocess.run([sys.executable, "-c", _COMMAND, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code
    assert out in done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("thread finished\nexit hook ran")
