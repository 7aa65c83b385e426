"""When to renew a token: pure functions of `now`, testable without moving any clock.

Two clocks, never mixed: expiry and `refresh_at` are wall-clock Unix seconds
(`time.time()`), because tokens carry wall-clock times; durations (a flight's age, an
error hold, the spacing of 401-forced renewals) are measured on `monotonic()`, so a
clock step neither abandons a healthy call nor stretches a hold.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

__all__ = [
    "AFTER_FAILURE",
    "ERROR_HOLD",
    "LONGEST_SLEEP",
    "Renewal",
    "after_failure",
    "after_same_token",
    "expiry_problem",
    "is_number",
    "monotonic",
    "plan_renewal",
    "refresh_on_problem",
]

# How long a failure with no valid token is re-raised without asking the credential
# again (at most `retry_backoff`): long enough to spare an identity endpoint that is down
# a call per request, short enough that a fixed `az login` shows at once.
ERROR_HOLD = 5.0
# The background renewers (`_keep_fresh`, `_renewal_watch`): the next try after a failure with
# no valid token (or with no loop to run an async credential on), and the longest sleep: they
# sleep on the monotonic clock, expiry is wall-clock.
AFTER_FAILURE = 5.0
LONGEST_SLEEP = 60.0

# Beyond the year 9999 no `expires_on` is a time in seconds: it is a unit mistake.
_LATEST_PLAUSIBLE = 253_402_300_800.0
# Before 1980 an `expires_on` is a lifetime (`expires_in`), not a time.
_EARLIEST_PLAUSIBLE = 315_576_000.0
# Credentials ask for renewal at half a token's lifetime (Entra's `refresh_in`, MSAL) or
# later. A `refresh_on` before this fraction of the lifetime has passed since the token
# was issued cannot be right: followed, a 1-hour token due 1 s after its issue is a
# credential call per second.
_EARLIEST_REFRESH_ON = 0.25

# The clock for durations. A module attribute, so a test can move it (time-machine
# moves the wall clock; whether it moves this one depends on its version).
monotonic = time.monotonic


class Renewal(NamedTuple):
    """When a fresh token is next renewed, as decided on its arrival."""

    refresh_at: float
    """Wall-clock Unix seconds from which the next request renews the token."""
    expires_on: float
    """Wall-clock Unix seconds after which the token is never handed out."""
    refresh_on_problem: str | None = None
    """Why the credential's `refresh_on` was not followed (`refresh_on_problem`), or None."""


def is_number(value: object) -> bool:
    """A finite int or float (not a bool), one a float can hold."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past float's range (a JSON record can hold one)
        return False


def expiry_problem(expires_on: object, now: float) -> str | None:
    """What is wrong with a credential's `expires_on` at `now`, or None if it is usable."""
    if not is_number(expires_on):
        return f"returned expires_on of type {type(expires_on).__name__}; expected seconds since the epoch (int)"
    assert isinstance(expires_on, (int, float))
    if expires_on >= _LATEST_PLAUSIBLE:
        unit = min(
            (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)),
            key=lambda pair: abs(expires_on / pair[1] - now),
        )[0]
        return (
            f"returned expires_on={expires_on:.0f}, after the year 9999: it looks like {unit} "
            "since the epoch; expected seconds"
        )
    if expires_on <= now:
        hint = (
            "it looks like a lifetime in seconds (expires_in), not a time since the epoch"
            if expires_on < _EARLIEST_PLAUSIBLE
            else "is this machine's clock right?"
        )
        return f"returned a token that expired {now - expires_on:.0f} s ago ({hint})"
    return None


def refresh_on_problem(refresh_on: float, expires_on: float, now: float, issued_at: float | None = None) -> str | None:
    """What makes a credential's `refresh_on` impossible to follow at `now`, the token's
    arrival, or None if it can be right.

    A `refresh_on` is a time between a token's arrival and its expiry, no earlier than a
    quarter of its lifetime after its issue. One before 1980 is a lifetime (`refresh_in`)
    given in its place; one already past says every new token is due at once (followed,
    that is a credential call per request); one after expiry says nothing a renewal could
    use; one within the first quarter of the lifetime (`_EARLIEST_REFRESH_ON`) makes a
    call every few seconds or minutes.

    `issued_at`: when the token was issued (a JWT's `iat`), if known; else it counts from
    `now`. A token that arrives mid-life (from a credential's own cache, or another
    process's through the shared store) is due soon after its arrival, rightly.
    """
    if refresh_on < _EARLIEST_PLAUSIBLE:
        return (
            f"returned refresh_on={refresh_on:.0f}: it looks like a lifetime in seconds (refresh_in), "
            "not a time since the epoch"
        )
    if refresh_on <= now:
        return f"returned a token whose refresh_on was already {now - refresh_on:.0f} s past when it arrived"
    if refresh_on > expires_on:
        return f"returned a token whose refresh_on is {refresh_on - expires_on:.0f} s after its expiry"
    # An issue time after arrival (the issuer's clock ahead) or not before expiry says nothing.
    issued = now if issued_at is None or not _EARLIEST_PLAUSIBLE <= issued_at < expires_on else min(issued_at, now)
    lifetime = expires_on - issued
    if refresh_on - issued < lifetime * _EARLIEST_REFRESH_ON:
        return (
            f"returned a token whose refresh_on comes {refresh_on - issued:.0f} s after it was issued, "
            f"before a quarter of its {lifetime:.0f} s lifetime"
        )
    return None


def plan_renewal(
    now: float,
    expires_on: float,
    refresh_on: float | None,
    margin: float,
    jitter_draw: float = 0.0,
    issued_at: float | None = None,
) -> Renewal:
    """When to renew a token that arrived at `now` (issued at `issued_at`, if known).

    Renewal is due once `margin` seconds or fewer remain (azure-identity's `<=`), with
    the margin capped at half the lifetime so a short-lived token is not renewed on
    every request. A `refresh_on` that comes first wins, unless it cannot be right
    (`refresh_on_problem`: a lifetime, already past on arrival, after expiry, within the
    first quarter of the lifetime): then this rule alone decides, and
    `Renewal.refresh_on_problem` says why. `jitter_draw` (drawn from `[0, jitter]` by the
    caller) only ever moves renewal earlier, and not earlier than a quarter of the
    lifetime.
    """
    lifetime = expires_on - now
    refresh_at = expires_on - min(margin, lifetime / 2)
    problem = None if refresh_on is None else refresh_on_problem(refresh_on, expires_on, now, issued_at)
    if refresh_on is not None and problem is None and refresh_on < refresh_at:
        refresh_at = float(refresh_on)
    if jitter_draw:
        refresh_at = min(refresh_at, max(now + lifetime / 4, refresh_at - jitter_draw))
    return Renewal(refresh_at, float(expires_on), problem)


def after_failure(now: float, expires_on: float, backoff: float) -> float:
    """`refresh_at` of a still-valid token after a failed renewal: one `backoff` later."""
    return min(expires_on, now + backoff)


def after_same_token(now: float, expires_on: float, backoff: float) -> float:
    """`refresh_at` when a renewal hands back the token already held (its credential's cache).

    azure-identity credentials do so until their own renewal window: ask again after
    `min(backoff, half the remaining life)` rather than on every request.
    """
    return min(expires_on, now + min(backoff, (expires_on - now) / 2))
