"""The single flight's transitions (`_state`) stepped by hand with plain numbers: no
threads, no event loop, no clock (as `test_flow.py` steps the 401 flow).

`now` is the wall clock (token times), `mono` the monotonic one (durations); the
default settings hold throughout: `timeout` 60 s, `retry_backoff` 30 s.
"""

from __future__ import annotations

import dataclasses

import pytest

from azure_ad_token_auth._settings import CacheSettings
from azure_ad_token_auth._state import CachedToken, CacheState, Flight, Held, invalidate, land, plan, usable

NOW = 1_900_000_000.0  # wall clock
MONO = 1_000.0  # monotonic clock


def token(name: str = "t1", *, expires_in: float = 3600, refresh_in: float = 3300) -> CachedToken:
    return CachedToken(name, NOW + expires_in, NOW + refresh_in)


def state(**changes: object) -> CacheState:
    settings = changes.pop("settings", CacheSettings())
    return CacheState(settings, **changes)  # type: ignore[arg-type]


def flying(entry: CachedToken | None = None, **changes: object) -> tuple[CacheState, Flight]:
    """A state with a flight started at MONO, and that flight."""
    s, p = plan(state(entry=entry, **changes), NOW + 3400 if entry else NOW, MONO)
    assert p.launch is not None
    return s, p.launch


# -- what a caller gets, and whether a renewal starts ---------------------------------


def test_with_no_token_the_first_caller_starts_a_flight_and_waits_for_it() -> None:
    s, p = plan(state(), NOW, MONO)
    assert p.entry is None and p.launch is not None and p.wait_for is p.launch
    assert s.flight is p.launch and p.launch.started == MONO


def test_a_second_caller_waits_for_the_same_flight_and_starts_none() -> None:
    s, first = flying()
    s2, p = plan(s, NOW + 1, MONO + 1)
    assert p.wait_for is first and p.launch is None and s2 is s


def test_a_fresh_token_is_handed_out_and_nothing_changes() -> None:
    s = state(entry=token())
    s2, p = plan(s, NOW + 3299, MONO)
    assert p.entry is s.entry and p.wait_for is None and p.launch is None and s2 is s


def test_a_due_token_is_handed_out_while_a_background_renewal_starts() -> None:
    s, p = plan(state(entry=token()), NOW + 3300, MONO)  # refresh_at reached
    assert p.entry is not None and p.launch is not None and p.wait_for is None
    assert s.flight is p.launch


def test_without_background_refresh_the_caller_waits_with_the_valid_token_as_fallback() -> None:
    s, p = plan(state(entry=token(), settings=CacheSettings(background_refresh=False)), NOW + 3300, MONO)
    assert s.flight is p.launch is not None and p.wait_for is p.launch and p.entry is not None
    assert p.launch is not None and p.wait_for is p.launch and p.entry is not None


def test_a_due_token_with_a_renewal_under_way_starts_no_second_one() -> None:
    s, first = flying(token())
    _, p = plan(s, NOW + 3401, MONO + 1)
    assert p.launch is None and p.entry is s.entry and s.flight is first


def test_a_caller_that_cannot_start_a_call_gets_the_valid_token_or_nothing() -> None:
    s = state(entry=token())
    assert plan(s, NOW + 3300, MONO, can_start=False) == (s, (s.entry, None, None, None))
    empty = state()
    assert plan(empty, NOW, MONO, can_start=False) == (empty, (None, None, None, None))


def test_an_expired_token_is_never_handed_out() -> None:
    _, p = plan(state(entry=token()), NOW + 3600, MONO)
    assert p.entry is None and p.wait_for is p.launch is not None


def test_a_flight_older_than_timeout_is_abandoned_and_the_next_caller_starts_another() -> None:
    s, hung = flying()
    _, p = plan(s, NOW + 60, MONO + 60)  # exactly `timeout`: still waited for
    assert p.wait_for is hung and p.launch is None
    s2, p = plan(s, NOW + 61, MONO + 60.5)
    assert p.launch is not None and p.launch is not hung and s2.flight is p.launch


def test_a_hung_flight_is_not_abandoned_while_an_earlier_abandoned_call_still_runs() -> None:
    s, hung = flying()
    s2, p = plan(s, NOW + 61, MONO + 61, others_running=True)
    # At most two calls at once: the caller waits for the one in progress (and times out).
    assert s2 is s and p.wait_for is hung and p.launch is None


def test_an_orphaned_flight_is_abandoned_at_once() -> None:
    s, gone = flying()
    s2, p = plan(s, NOW, MONO + 1, orphaned=True)
    assert p.launch is not None and p.launch is not gone and s2.flight is p.launch


def test_the_new_flight_is_made_by_the_drivers_factory() -> None:
    class Mine(Flight):
        __slots__ = ()

    _, p = plan(state(), NOW, MONO, new_flight=Mine)
    assert type(p.launch) is Mine


# -- what a landing call does ----------------------------------------------------------


def test_a_new_token_is_cached_and_the_flight_is_done() -> None:
    s, f = flying()
    s2, landing = land(s, f, token("new"), NOW + 1, MONO + 1)
    assert s2.entry is not None and s2.entry is landing.entry and s2.entry.token == "new"
    assert s2.flight is None and s2.refreshes == 1 and s2.failures == 0 and landing.kept is None


def test_the_same_token_again_is_kept_and_asked_for_again_after_the_backoff() -> None:
    held = token("same")
    s, f = flying(held)  # due at NOW + 3300, the call starts at NOW + 3400: 200 s left
    s2, landing = land(s, f, token("same"), NOW + 3400, MONO + 1)
    assert s2.entry is not None and s2.entry.token == "same"
    assert s2.entry.refresh_at == NOW + 3400 + 30  # min(backoff, half of the 200 s left)
    assert s2.refreshes == 0 and landing.entry is s2.entry


def test_the_same_token_close_to_expiry_is_asked_for_again_at_half_its_remaining_life() -> None:
    s, f = flying(token("same"))
    s2, _ = land(s, f, token("same"), NOW + 3580, MONO + 1)  # 20 s left
    assert s2.entry is not None and s2.entry.refresh_at == NOW + 3590


def test_a_failed_renewal_keeps_the_valid_token_and_retries_after_the_backoff() -> None:
    s, f = flying(token())
    s2, landing = land(s, f, OSError("down"), NOW + 3400, MONO + 1)
    assert s2.entry is not None and s2.entry.token == "t1" and s2.entry.refresh_at == NOW + 3430
    assert landing.kept is s2.entry and landing.entry is None
    assert s2.failures == 1 and s2.held is None and s2.flight is None


def test_a_failed_renewal_never_defers_past_expiry() -> None:
    s, f = flying(token())
    s2, _ = land(s, f, OSError("down"), NOW + 3590, MONO + 1)
    assert s2.entry is not None and s2.entry.refresh_at == NOW + 3600


def test_a_failure_with_no_valid_token_is_held_for_five_seconds_then_asked_again() -> None:
    s, f = flying()
    error = OSError("down")
    s2, landing = land(s, f, error, NOW, MONO + 1)
    assert landing.entry is None and s2.held == Held(error, error.__traceback__, MONO + 1 + 5) and s2.failures == 1
    _, p = plan(s2, NOW + 4, MONO + 5.9)
    assert p.raise_held is s2.held and p.launch is None
    _, p = plan(s2, NOW + 5, MONO + 6)
    assert p.raise_held is None and p.launch is not None


def test_the_hold_is_at_most_retry_backoff() -> None:
    s, f = flying(settings=CacheSettings(retry_backoff=2))
    s2, _ = land(s, f, OSError("down"), NOW, MONO)
    assert s2.held is not None and s2.held.until == MONO + 2


def test_a_new_token_ends_the_hold() -> None:
    s, f = flying()
    s = dataclasses.replace(s, held=Held(OSError("down"), None, MONO + 5))  # another call failed meanwhile
    s2, _ = land(s, f, token(), NOW, MONO)
    assert s2.held is None


def test_a_refusal_of_cae_claims_is_not_held() -> None:
    s, _ = invalidate(state(entry=token()), "t1", "claims", MONO)
    s, p = plan(s, NOW, MONO)
    assert p.launch is not None and p.launch.claims == "claims"
    s2, _ = land(s, p.launch, OSError("refused"), NOW, MONO)
    assert s2.held is None and s2.failures == 1


def test_keyboard_interrupt_reaches_its_waiters_but_is_not_held() -> None:
    s, f = flying()
    s2, landing = land(s, f, KeyboardInterrupt(), NOW, MONO)
    assert s2.held is None and landing.entry is None and s2.flight is None


def test_a_call_whose_loop_went_away_lands_nothing_and_counts_no_failure() -> None:
    s, f = flying()
    s2, landing = land(s, f, None, NOW, MONO)
    assert landing == (None, None) and s2.failures == 0 and s2.flight is None and s2.held is None


def test_an_abandoned_call_landing_late_does_not_replace_the_valid_token_a_later_call_brought() -> None:
    s, hung = flying()
    s, p = plan(s, NOW + 61, MONO + 61)
    assert p.launch is not None
    s, _ = land(s, p.launch, token("later"), NOW + 62, MONO + 62)
    s2, landing = land(s, hung, token("late"), NOW + 63, MONO + 63)
    assert s2.entry is s.entry and landing.entry is not None and landing.entry.token == "late"


def test_an_abandoned_call_landing_late_replaces_an_expired_token() -> None:
    _, hung = flying()
    s = state(entry=token("old", expires_in=10))
    s2, _ = land(s, hung, token("late"), NOW + 20, MONO + 20)
    assert s2.entry is not None and s2.entry.token == "late"


def test_an_abandoned_call_failing_late_says_nothing() -> None:
    s, hung = flying()
    s, p = plan(s, NOW + 61, MONO + 61)
    s2, _ = land(s, hung, OSError("late"), NOW + 62, MONO + 62)
    assert s2.failures == 0 and s2.held is None and s2.flight is p.launch  # the later call is still awaited


# -- a 401: invalidate ------------------------------------------------------------------


def test_a_rejected_token_is_dropped_and_the_call_under_way_disowned() -> None:
    s, f = flying(token())
    s2, retry = invalidate(s, "t1", None, MONO + 1)
    assert retry and s2.entry is None and s2.flight is None and s.flight is f
    assert s2.generation == s.generation + 1 and s2.last_forced == MONO + 1


def test_a_call_begun_before_the_401_does_not_bring_back_a_token() -> None:
    s, stale = flying(token())
    s, _ = invalidate(s, "t1", None, MONO + 1)
    s2, _ = land(s, stale, token("stale"), NOW + 3401, MONO + 2)
    assert s2.entry is None and s2.refreshes == 0


def test_a_call_begun_before_the_401_failing_counts_nothing() -> None:
    s, stale = flying(token())
    s, _ = invalidate(s, "t1", None, MONO + 1)
    s2, _ = land(s, stale, OSError("down"), NOW + 3401, MONO + 2)
    assert s2.failures == 0 and s2.held is None


def test_the_call_after_the_401_is_of_the_new_generation_and_lands() -> None:
    s, _ = invalidate(state(entry=token()), "t1", None, MONO)
    s, p = plan(s, NOW, MONO)
    assert p.launch is not None and p.launch.generation == s.generation == 1
    s2, _ = land(s, p.launch, token("t2"), NOW, MONO)
    assert s2.entry is not None and s2.entry.token == "t2"


def test_cae_claims_go_with_the_next_call_only() -> None:
    s, _ = invalidate(state(entry=token()), "t1", "claims", MONO)
    assert s.claims == "claims"
    s, p = plan(s, NOW, MONO)
    assert p.launch is not None and p.launch.claims == "claims" and s.claims is None
    s, _ = land(s, p.launch, OSError("refused"), NOW, MONO)
    _, p = plan(s, NOW, MONO)
    assert p.launch is not None and p.launch.claims is None


def test_a_401_to_a_token_already_replaced_changes_nothing_and_retries() -> None:
    s = state(entry=token("t2"))
    assert invalidate(s, "t1", None, MONO) == (s, True)


def test_a_second_401_within_the_backoff_drops_nothing_and_does_not_retry() -> None:
    s, _ = invalidate(state(entry=token()), "t1", None, MONO)
    s, p = plan(s, NOW, MONO)
    assert p.launch is not None
    s, _ = land(s, p.launch, token("t2"), NOW, MONO)
    s2, retry = invalidate(s, "t2", None, MONO + 29.9)
    assert not retry and s2 is s
    _, retry = invalidate(s, "t2", None, MONO + 30)
    assert retry


def test_a_401_ends_a_held_failure() -> None:
    error = OSError("down")
    s = state(entry=token(), held=Held(error, None, MONO + 5))
    s2, _ = invalidate(s, "t1", None, MONO)
    assert s2.held is None


# -- fallbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "usable_then"), [(NOW + 3599.9, True), (NOW + 3600, False)])
def test_a_token_is_a_fallback_until_it_expires(at: float, usable_then: bool) -> None:
    entry = token()
    assert (usable(entry, at) is entry) is usable_then
    assert usable(None, at) is None
