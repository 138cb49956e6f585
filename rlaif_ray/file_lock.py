"""An exclusive file lock taken within a bound: the machine-wide locks (a local Ray's
start, a model's build) wait for another holder, but not forever."""

from __future__ import annotations

import fcntl
import time
from typing import IO


def lock_within(file: int | IO, wait_s: float, poll_s: float = 0.1) -> bool:
    """Take an exclusive `flock` on `file` (a descriptor or an open file), polling for at
    most `wait_s` while another holds it; whether it was taken. The lock goes with the
    file's last close (or a holder's death)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
