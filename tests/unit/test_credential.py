"""Credential binding: what the cache accepts from a credential, and what it refuses."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo

from azure_ad_token_auth import AzureADTokenAuth, InvalidTokenError, TokenCache, fingerprint
from azure_ad_token_auth import async_token_provider as token_provider_async
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential
from conftest import Clock, echo

SECRET = "secret-token-value"
LATER = 2_000_000_000


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (SECRET + "\n", "line break"),
        (SECRET + "\r\nX-Injected: 1", "line break"),
        ("secret token value", "whitespace"),
        (SECRET + "\t", "whitespace"),
        (SECRET + "\x00", "control or non-ASCII"),
        (SECRET + "é", "control or non-ASCII"),
    ],
)
def test_a_token_that_cannot_go_in_a_header_is_refused_naming_the_credential(token: str, message: str) -> None:
    fake = FakeCredential(result=lambda: AccessTokenInfo(token, LATER))
    with pytest.raises(InvalidTokenError, match=message) as info:
        TokenCache(fake).get_token()
    assert "FakeCredential.get_token_info()" in str(info.value)
    assert "secret" not in str(info.value)


def test_a_token_with_a_trailing_newline_sends_nothing(server: AzureOpenAIStandIn) -> None:
    fake = FakeCredential(result=lambda: AccessToken(SECRET + "\n", LATER), token_info=False)
    with requests.Session() as session:
        session.auth = AzureADTokenAuth(fake)
        with pytest.raises(InvalidTokenError, match="FakeCredential.get_token") as info:
            session.post(echo(server), data=b"x")
    assert SECRET not in str(info.value)
    assert server.requests == []


# Factories, so that the test's own frame (rendered too) holds no token.
GARBAGE: list[Callable[[], Any]] = [
    lambda: AccessTokenInfo(SECRET + "\n", LATER),
    lambda: AccessTokenInfo(SECRET, "2000000000"),  # type: ignore[arg-type]
    lambda: AccessTokenInfo(SECRET, 1000),
    lambda: AccessToken(SECRET, float("nan")),
    lambda: AccessToken(SECRET + " ", LATER),
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_no_token_in_the_locals_of_a_rendered_invalid_token_traceback(garbage: Callable[[], Any]) -> None:
    # Error trackers render every frame's locals (capture_locals): the token must not be there.
    cache = TokenCache(FakeCredential(result=garbage))
    for _ in range(2):  # the first failure, then the same error held
        with pytest.raises(InvalidTokenError) as info:
            cache.get_token()
        rendered = "".join(
            traceback.TracebackException(
                type(info.value), info.value, info.value.__traceback__, capture_locals=True
            ).format()
        )
        assert "FakeCredential" in rendered
        assert SECRET not in rendered


class _PlainMethodReturningACoroutine:
    """An async credential behind a method not declared `async def` (a wrapper, a shim)."""

    def __init__(self) -> None:
        self.calls = 0
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def _fetch(self) -> AccessToken:
        self.loops.append(asyncio.get_running_loop())  # needs the caller's running loop
        await asyncio.sleep(0)
        self.calls += 1
        return AccessToken(f"wrapped-{self.calls}", int(time.time()) + 3600)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self._fetch()


async def test_a_plain_get_token_returning_an_awaitable_is_awaited_in_the_async_paths(clock: Clock) -> None:
    cred = _PlainMethodReturningACoroutine()
    cache = TokenCache(cred, background_refresh=False)  # type: ignore[arg-type]
    assert await cache.get_token_async() == "wrapped-1"
    assert await cache.get_header_async() == "Bearer wrapped-1"
    clock.shift(3400)
    assert await cache.get_token_async() == "wrapped-2"  # renewed, awaited again
    assert cred.loops == [asyncio.get_running_loop()] * 2
    assert await token_provider_async(cred)() == "wrapped-3"  # a shared cache of its own


class _Hostile(str):
    """A token whose own methods raise with the token in the message, or lie."""

    def _leak(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"leaked {str.__str__(self)}")

    __bool__ = __len__ = __str__ = __repr__ = __hash__ = __iter__ = __contains__ = _leak
    __add__ = __radd__ = __getitem__ = __format__ = encode = strip = startswith = _leak

    def __eq__(self, other: object) -> bool:  # lies: equal to everything
        return True

    def __ne__(self, other: object) -> bool:
        return False


class _HostileInt(int):
    def __float__(self) -> float:
        raise RuntimeError("leaked expires_on")

    def __ge__(self, other: object) -> bool:
        raise RuntimeError("leaked expires_on")

    __le__ = __lt__ = __gt__ = __index__ = __int__ = __ge__


class _HostileFloat(float):
    __float__ = __ge__ = __le__ = __lt__ = __gt__ = __sub__ = __rsub__ = __format__ = _HostileInt.__ge__


class _NotAStr:
    """Claims to be a str through `__class__` (which `isinstance` trusts)."""

    __class__ = str  # type: ignore[assignment]

    def __str__(self) -> str:
        raise RuntimeError("leaked " + SECRET)


@pytest.mark.parametrize("expiry", [lambda: _HostileInt(LATER), lambda: _HostileFloat(LATER)])
def test_a_str_subclass_token_is_used_as_a_plain_str_copy_without_running_its_methods(
    server: AzureOpenAIStandIn, expiry: Callable[[], Any]
) -> None:
    fake = FakeCredential(result=lambda: AccessTokenInfo(_Hostile(SECRET), expiry()))
    cache = TokenCache(fake)
    token = cache.get_token()
    assert type(token) is str and token == SECRET
    assert type(cache.current.expires_on) is float and cache.current.expires_on == LATER  # type: ignore[union-attr]
    with requests.Session() as session:
        session.auth = AzureADTokenAuth(cache)
        session.post(echo(server), data=b"x")
    assert server.requests[-1].token_fingerprint == fingerprint(SECRET)


@pytest.mark.parametrize(
    "garbage",
    [
        lambda: AccessTokenInfo(_Hostile(""), LATER),
        lambda: AccessTokenInfo(_Hostile(SECRET + "\n"), LATER),
        lambda: AccessTokenInfo(_NotAStr(), LATER),  # type: ignore[arg-type]
        lambda: AccessTokenInfo(SECRET, _HostileInt(1000)),
        lambda: AccessTokenInfo(SECRET, _HostileFloat("nan")),
    ],
)
def test_a_hostile_answer_is_refused_with_invalid_token_error_and_no_value_in_the_text(
    garbage: Callable[[], Any],
) -> None:
    cache = TokenCache(FakeCredential(result=garbage))
    with pytest.raises(InvalidTokenError) as info:
        cache.get_token()
    rendered = "".join(traceback.format_exception(info.value))
    assert "leaked" not in rendered and SECRET not in rendered
    assert "FakeCredential.get_token_info()" in str(info.value)
