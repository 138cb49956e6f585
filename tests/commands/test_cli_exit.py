"""The `rlaif-ray` command's fast exit: its exit code, its output, its threads' work and the
exit hooks kept, and no wait on a thread pool's idle workers."""

import subprocess
import sys

import pytest

_COMMAND = """
import atexit, sys, threading
from concurrent.futures import ThreadPoolExecutor
from rlaif_ray import cli
atexit.register(lambda: print("exit hook ran"))
# A thread pool kept with an idle worker (as the weight checksums keep one in the driver).
pool = ThreadPoolExecutor(1)
pool.submit(print, "pool used").result()
# A thread whose work (a sum over 2e7 numbers) starts only once main has returned.
main_returned = threading.Event()
threading.Thread(target=lambda: (main_returned.wait(60), sum(range(20_000_000)),
                                 print("thread finished"))).start()
run_main = cli.main
cli.main = lambda: (code := run_main(), main_returned.set(), code)[-1]
sys.argv = ["rlaif-ray", *sys.argv[1:]]
cli.console_main()
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
