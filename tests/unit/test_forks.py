"""`_forks`: the one fork-safe lock helper every lock of the package is made with."""

from __future__ import annotations

import os
import threading

import pytest

from azure_ad_token_auth._forks import fork_safe_lock


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_lock_held_by_another_thread_at_the_fork_is_free_in_the_child() -> None:
    lock = fork_safe_lock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the holding thread does not exist here
            code = 1
            try:
                code = 0 if lock.lock.acquire(timeout=2) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join(5)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not lock.lock.locked()  # the parent's lock is the parent's: released by its holder


def test_it_is_a_lock() -> None:
    lock = fork_safe_lock()
    with lock:
        assert lock.lock.locked()
        assert not lock.lock.acquire(blocking=False)
    assert not lock.lock.locked()
