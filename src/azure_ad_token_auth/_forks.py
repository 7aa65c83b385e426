"""Module-level locks a forked child must not inherit held.

A fork copies only the forking thread: a lock another thread held at that moment
stays held in the child for ever. Every module-level lock of the package registers
its reset here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["reset_in_child"]


def reset_in_child(reset: Callable[[], None]) -> None:
    """Run `reset` in every forked child, before it returns from `fork()`."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)
