"""A file lock held from another descriptor (as another process would hold it), and the
check that a lock's user waits for its holder and goes on when it lets go."""

import fcntl
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path


def hold(lock: Path) -> int:
    """Take `lock` from a descriptor of its own; `os.close` it to let go."""
    other = os.open(lock, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)
    return other


def assert_waits_for_its_holder(lock: Path, take: Callable[[], AbstractContextManager]):
    """With `lock` held elsewhere, `take()` is held back; once let go, it enters."""
    other = hold(lock)
    entered = threading.Event()

    def enter():
        with take():
            entered.set()

    waiting = threading.Thread(target=enter)
    waiting.start()
    assert not entered.wait(1.0)  # held back while the other holds it
    os.close(other)  # the other is done
    assert entered.wait(30)
    waiting.join()
