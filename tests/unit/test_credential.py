"""Credential binding: what the cache accepts from a credential, and what it refuses."""

from __future__ import annotations

import asyncio
import re
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo

from azure_ad_token_auth import (
    AzureADTokenAuth,
    ConfigurationError,
    ConfigurationTypeError,
    InvalidTokenError,
    TokenCache,
    fingerprint,
    token_provider,
)
from azure_ad_token_auth import async_token_provider as token_provider_async
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential
from conftest import Clock, echo


@pytest.fixture
def server(https_server: AzureOpenAIStandIn) -> Iterator[AzureOpenAIStandIn]:
    """The https stand-in, trusted by requests through REQUESTS_CA_BUNDLE (its `patched_env`)."""
    with https_server.patched_env():
        yield https_server


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

    __le__ = __lt__ = __gt__ = __index__ = __int__ = __ge__  # type: ignore[assignment]  # hostile on purpose


class _HostileFloat(float):
    __float__ = __ge__ = __le__ = __lt__ = __gt__ = __sub__ = __rsub__ = __format__ = _HostileInt.__ge__  # type: ignore[assignment]


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
        lambda: AccessTokenInfo(SECRET, _HostileFloat("nan")),  # type: ignore[arg-type]
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


# -- misuse refused at construction, with the fix named ----------------------------------


def _openai_module() -> Any:
    return pytest.importorskip("openai")


def _install(credential: Any, scopes: Any = None) -> Any:
    from azure_ad_token_auth import install_openai_session, uninstall_openai_session

    openai = _openai_module()
    before = dict(vars(openai))
    try:
        kwargs = {} if scopes is None else {"scopes": scopes}
        return install_openai_session(credential, openai_module=openai, **kwargs)
    finally:
        uninstall_openai_session(openai)
        # Refused before openai was touched: not one module attribute changed.
        assert {k: v for k, v in vars(openai).items() if k in before} == before


def _httpx(package: str) -> Callable[..., Any]:
    def build(credential: Any, scopes: Any = None) -> Any:
        module = pytest.importorskip(f"azure_ad_token_auth.{package}")
        return module.AzureADHttpxAuth(credential) if scopes is None else module.AzureADHttpxAuth(credential, scopes)

    return build


def _aiohttp(credential: Any, scopes: Any = None) -> Any:
    module = pytest.importorskip("azure_ad_token_auth.aiohttp")
    return (
        module.AzureADClientMiddleware(credential)
        if scopes is None
        else module.AzureADClientMiddleware(credential, scopes)
    )


def _provider(factory: Callable[..., Any]) -> Callable[..., Any]:
    def build(credential: Any, scopes: Any = None) -> Any:
        return factory(credential) if scopes is None else factory(credential, scopes)

    return build


BUILDERS: dict[str, Callable[..., Any]] = {
    "TokenCache": _provider(TokenCache),
    "AzureADTokenAuth": _provider(AzureADTokenAuth),
    "httpx": _httpx("httpx"),
    "httpx2": _httpx("httpx2"),
    "aiohttp": _aiohttp,
    "token_provider": _provider(token_provider),
    "async_token_provider": _provider(token_provider_async),
    "install_openai_session": _install,
}


@pytest.mark.parametrize("builder", BUILDERS)
def test_a_credential_class_is_refused_naming_the_instance_to_pass(builder: str) -> None:
    from azure.identity import DefaultAzureCredential

    with pytest.raises(ConfigurationTypeError, match=r"pass an instance: DefaultAzureCredential\(\)"):
        BUILDERS[builder](DefaultAzureCredential)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        (123, "a string or a sequence of strings"),
        (b"https://cognitiveservices.azure.com/.default", "must be str, not bytes: decode it"),
        ({"https://cognitiveservices.azure.com/.default": 1}, "a string or a sequence of strings"),
        (["https://cognitiveservices.azure.com/.default", 7], "only strings; got int 7"),
        ([], "must not be empty"),
        ([""], "empty string"),
    ],
)
def test_scopes_that_are_not_strings_are_refused_saying_what_is_wanted(
    builder: str, scopes: Any, message: str, fake: FakeCredential
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        BUILDERS[builder](fake, scopes)
    assert fake.calls == 0


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize(
    ("scope", "suggested"),
    [
        ("https://cognitiveservices.azure.com", "https://cognitiveservices.azure.com/.default"),
        ("https://cognitiveservices.azure.com/", "https://cognitiveservices.azure.com/.default"),
        ("https://cognitiveservices.azure.us", "https://cognitiveservices.azure.us/.default"),
        ("api://00000000-0000-0000-0000-0000000000c0", "api://00000000-0000-0000-0000-0000000000c0/.default"),
    ],
)
def test_a_bare_resource_is_refused_suggesting_its_default_scope(
    builder: str, scope: str, suggested: str, fake: FakeCredential
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(repr(suggested))):
        BUILDERS[builder](fake, [scope])
    assert fake.calls == 0


@pytest.mark.parametrize(
    "scopes",
    [
        "https://cognitiveservices.azure.com/.default",
        "https://graph.microsoft.com/User.Read",
        "api://00000000-0000-0000-0000-0000000000c0/.default",
        ["openid", "https://graph.microsoft.com/Mail.Read"],
        ("a/.default", "b/.default"),
    ],
)
def test_scopes_entra_accepts_are_kept_as_given(scopes: Any, fake: FakeCredential) -> None:
    expected = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    assert TokenCache(fake, scopes).scopes == expected
    assert AzureADTokenAuth(fake, scopes).cache.scopes == expected


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        ("https://cognitiveservices.azure.com/.default", "a scope goes in scopes="),
        (object(), r"get_token_info\(\) or get_token\(\) method"),
    ],
)
def test_what_is_no_credential_at_all_is_refused_saying_what_is_wanted(credential: Any, message: str) -> None:
    for builder in ("TokenCache", "AzureADTokenAuth", "token_provider"):
        with pytest.raises(ConfigurationTypeError, match=message):
            BUILDERS[builder](credential)
