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

from azure_ad_token_auth import AzureADTokenAuth, InvalidTokenError, TokenCache
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
    lambda: AccessToken(SECRET, float("nan")),  # type: ignore[arg-type]
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
