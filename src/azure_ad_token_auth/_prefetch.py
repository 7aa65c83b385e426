"""prefetch: start a cache's first token fetch in the background, at construction.

The first request then waits at most for what remains of that fetch (it joins the
same single flight), not for `DefaultAzureCredential`'s whole chain from the start.
At most one prefetch per cache is pending at a time: an adapter built per request with
`prefetch=True` (it gets the shared cache each time) starts no thread while one is
already waiting for that cache's token, however long the credential hangs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._forks import fork_safe_lock, reset_in_child

if TYPE_CHECKING:
    from ._source import TokenSource

__all__ = ["prefetch"]

_log = logging.getLogger("azure_ad_token_auth")

_TASKS: set[asyncio.Task[Any]] = set()  # strong references until they finish
# Caches with a prefetch under way (its thread or task has not finished).
_PENDING: weakref.WeakSet[TokenSource] = weakref.WeakSet()
_PENDING_LOCK = fork_safe_lock()


def prefetch(cache: TokenSource) -> None:
    """Fetch `cache`'s first token in the background; a failure waits for the first request.

    An async credential is fetched on the running event loop; without one, ValueError.
    Nothing starts while the cache holds a token or a prefetch of it is pending.
    """
    if cache.current is not None:
        return
    loop = None
    if cache.is_async:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "prefetch with an async credential needs a running event loop: create the cache or provider "
                "inside it, or leave prefetch off"
            ) from None
    with _PENDING_LOCK:
        if cache in _PENDING:
            return
        _PENDING.add(cache)
    if loop is not None:
        task = loop.create_task(cache.get_token_async())
        _TASKS.add(task)
        task.add_done_callback(lambda task: _finished(cache, task))
        return
    try:
        threading.Thread(target=_fetch, args=(cache,), name="azure-ad-token-auth-prefetch", daemon=True).start()
    except BaseException:
        _done(cache)  # no thread (the interpreter is shutting down): a later prefetch may try again
        raise


def _fetch(cache: TokenSource) -> None:
    try:
        cache.get_token()
    except Exception as exc:  # noqa: BLE001 - the first request gets the cache's error
        _log.debug("prefetch: first token fetch failed: %s", type(exc).__name__)
    finally:
        _done(cache)


def _finished(cache: TokenSource, task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    _done(cache)
    if not task.cancelled() and task.exception() is not None:
        _log.debug("prefetch: first token fetch failed: %s", type(task.exception()).__name__)


def _done(cache: TokenSource) -> None:
    with _PENDING_LOCK:
        _PENDING.discard(cache)


def _forget_in_child() -> None:
    # A forked child has none of the parent's prefetch threads: none of them is pending there.
    _PENDING.clear()


reset_in_child(_forget_in_child)
