"""prefetch: start a cache's first token fetch in the background, at construction.

The first request then waits at most for what remains of that fetch (it joins the
same single flight), not for `DefaultAzureCredential`'s whole chain from the start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._source import TokenSource

__all__ = ["prefetch"]

_log = logging.getLogger("azure_ad_token_auth")

_TASKS: set[asyncio.Task[Any]] = set()  # strong references until they finish


def prefetch(cache: TokenSource) -> None:
    """Fetch `cache`'s first token in the background; a failure waits for the first request.

    An async credential is fetched on the running event loop; without one, ValueError.
    """
    if cache.current is not None:
        return
    if cache.is_async:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "prefetch with an async credential needs a running event loop: create the cache or provider "
                "inside it, or leave prefetch off"
            ) from None
        task = loop.create_task(cache.get_token_async())
        _TASKS.add(task)
        task.add_done_callback(_finished)
        return
    threading.Thread(target=_fetch, args=(cache,), name="azure-ad-token-auth-prefetch", daemon=True).start()


def _fetch(cache: TokenSource) -> None:
    try:
        cache.get_token()
    except Exception as exc:  # noqa: BLE001 - the first request gets the cache's error
        _log.debug("prefetch: first token fetch failed: %s", type(exc).__name__)


def _finished(task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.debug("prefetch: first token fetch failed: %s", type(task.exception()).__name__)
