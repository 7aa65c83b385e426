"""Who gets each new token: the callbacks clients register, each run where it must run.

A redis-py client registers `on_next(callback)` / `on_error(callback)` with its credential
provider, and expects the callback to re-authenticate its connections with each new token.
A sync client's callback does blocking I/O: it runs in a thread of its own, never on the
renewing thread (a callback stuck on a busy pool must not hold up the others). An async
client's callback is a coroutine function that must run on the client's own event loop
(its connections belong to that loop): the loop running when it registered, or, for a
client built outside any loop, the first loop seen asking for credentials (`bind`).

Each subscriber gets the newest token once: a token that arrives while its callback is
still busy with the previous one replaces any token waiting, so callbacks never pile up.
A callback that belongs to an object (a bound method, which is what redis-py registers) is
held weakly: a client that is garbage-collected drops out. `on_error` callbacks go with the
`on_next` registered just before them (redis-py registers them in that order).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._errors import UsageError
from ._forks import fork_safe_lock, reset_in_child

__all__ = ["Subscribers"]

_log = logging.getLogger("azure_ad_token_auth")

T = TypeVar("T")
Callback = Callable[[Any], Any]

# Every registry, so a forked child can forget the deliveries of its parent's threads.
_ALL: weakref.WeakSet[Subscribers[Any]] = weakref.WeakSet()


def _hold(callback: Callback) -> Callable[[], Callback | None]:
    """A reference to `callback`: weak for a bound method, strong for anything else."""
    if inspect.ismethod(callback):
        return weakref.WeakMethod(callback)
    return lambda: callback


def _is_async(callback: Callback) -> bool:
    call = getattr(callback, "__call__", None)  # noqa: B004 - an object with an async __call__ counts too
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(call)


class _Subscriber:
    __slots__ = ("__weakref__", "error", "is_async", "loop", "next", "pending", "running")

    def __init__(self, callback: Callback, loop: asyncio.AbstractEventLoop | None) -> None:
        self.next = _hold(callback)
        self.error: Callable[[], Callback | None] | None = None
        self.is_async = _is_async(callback)
        self.loop = loop if self.is_async else None
        self.pending: Any = None  # the token waiting for delivery
        self.running = False  # a delivery thread or task is draining `pending`


class Subscribers(Generic[T]):
    """The subscribers of one credential provider (see the module). Thread-safe."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = fork_safe_lock()
        self._subscribers: list[_Subscriber] = []
        self._orphan_errors: list[Callable[[], Callback | None]] = []  # on_error with no on_next before it
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until they finish
        _ALL.add(self)

    def add(self, callback: Callback) -> None:
        """Register an `on_next` callback (the same one twice counts once)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._prune()
            for subscriber in self._subscribers:
                if subscriber.next() == callback:
                    self._subscribers.remove(subscriber)  # moved last: its on_error may follow
                    self._subscribers.append(subscriber)
                    return
            self._subscribers.append(_Subscriber(callback, loop))

    def add_error(self, callback: Callback) -> None:
        """Register an `on_error` callback, for the `on_next` registered last."""
        with self._lock:
            if self._subscribers:
                self._subscribers[-1].error = _hold(callback)
            else:
                self._orphan_errors.append(_hold(callback))

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop` asked for credentials: async callbacks registered outside any loop run on it."""
        with self._lock:
            for subscriber in self._subscribers:
                if subscriber.is_async and (subscriber.loop is None or subscriber.loop.is_closed()):
                    subscriber.loop = loop

    def __len__(self) -> int:
        with self._lock:
            self._prune()
            return len(self._subscribers)

    def clear(self) -> None:
        with self._lock:
            self._subscribers.clear()
            self._orphan_errors.clear()

    def publish(self, token: T) -> None:
        """Hand `token` to every subscriber, each on its own thread or loop; returns at once."""
        with self._lock:
            self._prune()
            starts = []
            for subscriber in self._subscribers:
                if subscriber.loop is not None and subscriber.loop.is_closed():
                    # Its loop is gone, and its connections with it; a loop asking later rebinds it.
                    subscriber.loop, subscriber.running, subscriber.pending = None, False, None
                if subscriber.is_async and subscriber.loop is None:
                    continue  # its client never connected: it has no connection to re-authenticate
                subscriber.pending = token
                if not subscriber.running:
                    subscriber.running = True
                    starts.append(subscriber)
        for subscriber in starts:
            self._start(subscriber)

    def fail(self, error: BaseException) -> None:
        """Tell every `on_error` callback that no token can be had (each on its thread or loop)."""
        with self._lock:
            self._prune()
            targets = [(s.error, s.loop) for s in self._subscribers if s.error is not None]
            targets += [(ref, None) for ref in self._orphan_errors]
        for ref, loop in targets:
            callback = ref()
            if callback is not None:
                self._call_error(callback, error, loop)

    # -- running the callbacks -----------------------------------------------------------

    def _prune(self) -> None:
        """Under the lock: drop subscribers whose client is gone."""
        self._subscribers = [s for s in self._subscribers if s.next() is not None]

    def _start(self, subscriber: _Subscriber) -> None:
        if subscriber.loop is None:
            threading.Thread(
                target=self._drain, args=(subscriber,), name="azure-ad-token-auth-reauth", daemon=True
            ).start()
            return
        try:
            subscriber.loop.call_soon_threadsafe(self._start_task, subscriber)
        except RuntimeError:  # its loop closed meanwhile: its connections are gone with it
            with self._lock:
                subscriber.running = False

    def _take(self, subscriber: _Subscriber) -> tuple[Any, Callback | None]:
        with self._lock:
            token, subscriber.pending = subscriber.pending, None
            callback = subscriber.next() if token is not None else None
            if callback is None:
                subscriber.running = False
            return token, callback

    def _drain(self, subscriber: _Subscriber) -> None:
        while True:
            token, callback = self._take(subscriber)
            if callback is None:
                return
            try:
                result = callback(token)
                if inspect.isawaitable(result):  # a sync-looking callable answering with a coroutine
                    close = getattr(result, "close", None)
                    if callable(close):
                        close()
                    raise UsageError(
                        "an on_next callback that is not a coroutine function returned an awaitable, which nothing "
                        "awaits outside an event loop: register the coroutine function itself"
                    )
            except Exception as error:  # noqa: BLE001 - reported to its on_error and the log
                self._failed(subscriber, error)

    def _start_task(self, subscriber: _Subscriber) -> None:
        task = asyncio.get_running_loop().create_task(self._drain_async(subscriber))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_async(self, subscriber: _Subscriber) -> None:
        while True:
            token, callback = self._take(subscriber)
            if callback is None:
                return
            try:
                result = callback(token)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:  # noqa: BLE001 - reported to its on_error and the log
                self._failed(subscriber, error)

    def _failed(self, subscriber: _Subscriber, error: Exception) -> None:
        # The type only: an exception's text is the client's and may quote anything.
        _log.warning("%s: re-authenticating a client's connections failed (%s)", self._name, type(error).__name__)
        callback = subscriber.error() if subscriber.error is not None else None
        if callback is not None:
            self._call_error(callback, error, subscriber.loop)

    def _call_error(self, callback: Callback, error: BaseException, loop: asyncio.AbstractEventLoop | None) -> None:
        """Run an `on_error` callback: redis-py's re-raise the error, which ends here."""
        if not _is_async(callback):
            try:
                callback(error)
            except Exception as raised:  # noqa: BLE001 - redis-py's on_error callbacks always raise
                _log.debug("%s: on_error callback raised %s", self._name, type(raised).__name__)
            return
        if loop is None or loop.is_closed():
            return  # an async client that never connected, or whose loop is gone: nobody to tell

        async def call() -> None:
            try:
                await callback(error)
            except Exception as raised:  # noqa: BLE001 - as above
                _log.debug("%s: on_error callback raised %s", self._name, type(raised).__name__)

        def start() -> None:
            task = asyncio.get_running_loop().create_task(call())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        with contextlib.suppress(RuntimeError):  # its loop closed: nobody to tell
            loop.call_soon_threadsafe(start)

    def _after_fork_in_child(self) -> None:
        # The parent's delivery threads and loops do not exist in the child: deliveries start afresh.
        self._tasks = set()
        for subscriber in self._subscribers:
            subscriber.running, subscriber.pending = False, None
        self._subscribers = [s for s in self._subscribers if not s.is_async]


def _reset_after_fork() -> None:
    for subscribers in list(_ALL):
        subscribers._after_fork_in_child()


reset_in_child(_reset_after_fork)
