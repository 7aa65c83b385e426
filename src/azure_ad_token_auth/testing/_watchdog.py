"""A watchdog for a server a test process starts: no server outlives that process.

Started beside the server, its stdin a pipe only the starting process writes to, it reads
EOF when that process ends, however it ends (SIGKILL, a CI timeout, no `stop()` called).
It then signals the server (the signal of that server's shutdown; SIGKILL if it has not
gone within 10 s) and deletes the server's files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["release_watchdog", "start_watchdog"]

_WATCHDOG = """\
import os, shutil, signal, sys, time
sys.stdin.buffer.read()
pid, number, base = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
try:
    os.kill(pid, number)
    for _ in range(1000):
        os.kill(pid, 0)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
shutil.rmtree(base, ignore_errors=True)
"""


def start_watchdog(pid: int, signal: int, directory: Path) -> subprocess.Popen[bytes]:
    """Watch for this process's end: then send `signal` to `pid` and delete `directory`."""
    return subprocess.Popen(  # noqa: S603 - this Python, the code above
        [sys.executable, "-I", "-c", _WATCHDOG, str(pid), str(int(signal)), str(directory)], stdin=subprocess.PIPE
    )


def release_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """This process stops the server itself: end the watchdog without it doing anything."""
    watchdog.kill()
    watchdog.wait()
    assert watchdog.stdin is not None
    watchdog.stdin.close()
