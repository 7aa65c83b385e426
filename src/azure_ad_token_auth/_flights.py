"""Running a flight: one credential call, in a thread or a task, awaited by threads and
event loops alike.

`RunningFlight` is a `_state.Flight` with what its waiters need: an event sync callers
wait on, and per-loop futures for async callers, completed thread-safely when it lands.
The cache decides (`_state`) and records the outcome (its `land` callback); this module
only runs the call, waits and wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from . import _timing
from ._state import CachedToken, Flight

__all__ = ["Land", "RunningFlight", "start_task", "start_thread", "wait", "wait_async", "wake"]

# How often a caller waiting on a flight run by another event loop checks that the
# loop still exists (a closed loop never lands its flights).
_ORPHAN_POLL = 0.05

Outcome = CachedToken | BaseException | None
Land = Callable[["RunningFlight", Outcome], None]
"""Records a flight's outcome: a token, an exception, or None (its event loop went away)."""
After = Callable[[], Callable[[], None] | None]
"""Work to run once a flight has landed, in the thread or task that ran it (None: nothing)."""


def _no_work() -> None:
    return None


"""Asked once a flight has landed a token: work left to do (`Binding.after_landing`), or None."""


class RunningFlight(Flight):
    """A flight in progress, with its waiters and, once landed, its outcome.

    A waiter that gives up takes its future back out (under the cache's lock), so a
    hung call holds no memory for the callers that stopped waiting.
    """

    __slots__ = ("done", "entry", "error", "gone", "loop", "task", "traceback", "waiters")

    def __init__(self, claims: str | None, started: float, generation: int) -> None:
        super().__init__(claims, started, generation)
        self.done = threading.Event()
        self.entry: CachedToken | None = None
        self.error: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.gone = False  # its event loop shut down under it: no outcome, ask again
        self.waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop running an async flight
        self.task: FlightTask | None = None  # strong reference for async flights

    def orphaned(self) -> bool:
        """Will never land with an outcome: its event loop shut down or was closed under it."""
        return self.gone or (self.loop is not None and self.loop.is_closed() and not self.done.is_set())


class FlightTask(asyncio.Task):  # type: ignore[type-arg]
    """The task of an async flight, which knows whether someone cancelled it.

    A `CancelledError` from the credential itself (one awaiting a cancelled future) is
    a failure like any other; only a cancelled task (its loop shutting down) is not.
    """

    cancel_requested = False

    def cancel(self, *args: Any, **kwargs: Any) -> bool:
        self.cancel_requested = True
        return super().cancel(*args, **kwargs)


def start_thread(
    flight: RunningFlight, fetch: Callable[[], CachedToken], land: Land, name: str, after: After = _no_work
) -> None:
    """Run `fetch` (a sync credential call) in a thread of its own, then `land` its outcome,
    then, in that thread, the work `after` names (the waiters have their token by then).

    A thread per renewal (rare: once per token lifetime) lets every caller, the one that
    started it included, give up after `timeout` if the credential hangs.
    """
    try:
        threading.Thread(
            target=_run, args=(flight, fetch, land, name, after), name="azure-ad-token-auth-refresh", daemon=True
        ).start()
    except BaseException as exc:  # e.g. the interpreter shutting down: land it, or all wait
        land(flight, exc)
        raise


def _run(flight: RunningFlight, fetch: Callable[[], CachedToken], land: Land, name: str, after: After) -> None:
    try:
        entry = fetch()
    except asyncio.CancelledError as exc:  # nobody cancels a thread: the credential's own
        land(flight, _foreign_cancellation(name, exc))
    except BaseException as exc:  # noqa: BLE001 - handed to the waiters, re-raised there
        land(flight, exc)
    else:
        land(flight, entry)
        work = after()
        if work is not None:
            work()


def start_task(
    flight: RunningFlight, fetch: Callable[[], Awaitable[CachedToken]], land: Land, name: str, after: After
) -> None:
    """Run `fetch` (an async credential call) as a task of the running loop, then `land` it,
    then hand the work `after` names to the loop's default executor (never on the loop)."""
    flight.loop = asyncio.get_running_loop()
    flight.task = FlightTask(_run_async(flight, fetch, land, name, after), loop=flight.loop)


async def _run_async(
    flight: RunningFlight, fetch: Callable[[], Awaitable[CachedToken]], land: Land, name: str, after: After
) -> None:
    try:
        entry = await fetch()
    except asyncio.CancelledError as exc:
        if flight.task is not None and flight.task.cancel_requested:  # its loop is shutting down
            land(flight, None)
            raise
        land(flight, _foreign_cancellation(name, exc))
    except GeneratorExit:
        # The coroutine is closed with its loop, maybe by the garbage collector inside
        # some thread's `with cache._lock`: take no lock, only mark it (waiters poll).
        flight.gone = True
        raise
    except BaseException as exc:  # noqa: BLE001
        land(flight, exc)
    else:
        land(flight, entry)
        work = after()
        if work is not None:
            with contextlib.suppress(RuntimeError):  # the loop's executor is shut down: the work waits for next time
                asyncio.get_running_loop().run_in_executor(None, work)


def _foreign_cancellation(name: str, exc: asyncio.CancelledError) -> RuntimeError:
    # Re-raised as is, it would look like the waiting callers' own cancellation, and
    # re-planning on it made a credential call per loop turn.
    error = RuntimeError(
        f"{name} raised asyncio.CancelledError although nobody cancelled this token request; treated as a failed call"
    ).with_traceback(exc.__traceback__)
    error.__cause__ = exc
    return error


def wait(flight: RunningFlight, timeout: float) -> bool:
    """Wait for `flight` to land or be orphaned; False after `timeout`."""
    if flight.loop is None:
        return flight.done.wait(timeout)
    deadline = _timing.monotonic() + timeout
    while not flight.done.wait(_ORPHAN_POLL):
        if flight.orphaned():
            return True
        if _timing.monotonic() >= deadline:
            return False
    return True


async def wait_async(flight: RunningFlight, future: asyncio.Future[None], timeout: float) -> bool:
    """`wait` for coroutines: `future` (one of `flight.waiters`) completes when `flight` lands."""
    loop = asyncio.get_running_loop()
    if flight.loop is None or flight.loop is loop:
        # The common case, one wait: a timer beats wait_for + shield (a task and a
        # future more per waiter) when a thousand coroutines wait at once.
        wake_up = loop.call_later(timeout, _resolve, future)
        try:
            await future  # completed by the landing, or by the timer
        finally:
            wake_up.cancel()
        return flight.done.is_set()
    # A flight on another loop is checked now and then: that loop may be closed.
    deadline = _timing.monotonic() + timeout
    while True:
        remaining = deadline - _timing.monotonic()
        if remaining <= 0:
            return False
        done, _ = await asyncio.wait((future,), timeout=min(_ORPHAN_POLL, remaining))
        if done or flight.orphaned():
            return True


def wake(flight: RunningFlight, waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop]) -> None:
    """Wake everyone waiting for `flight`, which has landed."""
    flight.done.set()
    for future, loop in waiters.items():
        # RuntimeError: that loop is closed, so nobody waits there any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
