"""Back to a clean world, objects kept: the hooks behind `azure_ad_token_auth.testing.reset()`.

A test suite imports an application once and runs many tests against stand-ins that come and
go. What the application built at import time (an adapter, a provider, a `CachedCredential`)
stays; what it learned from an earlier test must not: a token, a held error or backoff, the
`DefaultAzureCredential` the library made (its own token cache, and the endpoints it read from
the environment then). Each module that keeps such state registers how to forget it, as each
registers what to do in a forked child (`_forks.reset_in_child`).

Background renewers (keep-fresh timers, Redis renewal watches) are quieted first: they must not
fetch for a cache between its reset and the next time someone asks it for a token, when the
environment may be the machine's own (no stand-in: `DefaultAzureCredential` would probe IMDS).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["on_reset", "reset_all"]

_QUIET: list[Callable[[], None]] = []
_FORGET: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None], *, renewer: bool = False) -> None:
    """Run `hook` at each `reset_all()`; `renewer=True` (a background renewer) before the others."""
    (_QUIET if renewer else _FORGET).append(hook)


def reset_all() -> None:
    """Every registered hook: background renewers quieted, then the state forgotten."""
    for hook in (*_QUIET, *_FORGET):
        hook()
