"""The cache's options in one place (`_settings`): checked values, the shared-cache key,
and a misspelled option named with the function the application called."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

import pytest

import azure_ad_token_auth
from azure_ad_token_auth import (
    AzureADTokenAuth,
    AzureADTokenAuthError,
    TokenCache,
    async_token_provider,
    install_openai_session,
    token_provider,
)
from azure_ad_token_auth._errors import ConfigurationError, UsageError
from azure_ad_token_auth._settings import CacheSettings
from azure_ad_token_auth.testing import FakeCredential


def test_defaults_are_the_documented_ones() -> None:
    settings = CacheSettings()
    assert (settings.refresh_margin, settings.retry_backoff, settings.timeout, settings.jitter) == (300, 30, 60, 0)
    assert settings.background_refresh and not settings.enable_cae and not settings.keep_fresh


def test_spelled_out_defaults_and_ints_key_the_same_settings() -> None:
    assert CacheSettings(refresh_margin=300, timeout=60) == CacheSettings()
    assert hash(CacheSettings(refresh_margin=300)) == hash(CacheSettings())
    assert isinstance(CacheSettings(refresh_margin=300).refresh_margin, float)


def test_keep_fresh_and_prefetch_do_not_change_the_shared_cache_key() -> None:
    assert CacheSettings(keep_fresh=True, prefetch=True).cache_key() == CacheSettings()
    assert CacheSettings(jitter=5).cache_key() != CacheSettings()


@pytest.mark.parametrize(
    "options",
    [{"background_refresh": "yes"}, {"enable_cae": 1}, {"keep_fresh": None}, {"tenant_id": 42}],
)
def test_an_option_of_the_wrong_type_is_a_usage_error(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=next(iter(options))) as info:
        TokenCache(FakeCredential(), **options)
    assert isinstance(info.value, TypeError) and isinstance(info.value, AzureADTokenAuthError)


def test_an_option_out_of_range_is_a_configuration_error_and_still_a_value_error() -> None:
    with pytest.raises(ConfigurationError, match="timeout") as info:
        TokenCache(FakeCredential(), timeout=-1)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AzureADTokenAuthError)


def _aiohttp_session(**options: Any) -> None:
    aiohttp = pytest.importorskip("azure_ad_token_auth.aiohttp")

    async def main() -> None:
        aiohttp.client_session(**options)

    asyncio.run(main())


def _openai_aiosession(**options: Any) -> None:
    aiohttp = pytest.importorskip("azure_ad_token_auth.aiohttp")

    async def main() -> None:
        async with aiohttp.openai_aiosession(openai_module=types.ModuleType("openai"), **options):
            pass

    asyncio.run(main())


def _httpx_auth(**options: Any) -> None:
    httpx = pytest.importorskip("azure_ad_token_auth.httpx")
    httpx.AzureADHttpxAuth(FakeCredential(), **options)


@pytest.mark.parametrize(
    ("called", "name"),
    [
        (lambda **o: TokenCache(FakeCredential(), **o), "TokenCache"),
        (lambda **o: AzureADTokenAuth(FakeCredential(), **o), "AzureADTokenAuth"),
        (lambda **o: token_provider(FakeCredential(), **o), "token_provider"),
        (lambda **o: async_token_provider(FakeCredential(), **o), "async_token_provider"),
        (lambda **o: install_openai_session(FakeCredential(), **o), "install_openai_session"),
        (_httpx_auth, "AzureADHttpxAuth"),
        (_aiohttp_session, "client_session"),
        (_openai_aiosession, "openai_aiosession"),
    ],
)
def test_a_misspelled_option_names_the_function_called_and_the_option_meant(
    called: Callable[..., Any], name: str
) -> None:
    with pytest.raises(UsageError) as info:
        called(refresh_margn=300)
    assert str(info.value) == (
        f"{name}() got an unexpected keyword argument 'refresh_margn' (did you mean 'refresh_margin'?)"
    )
    assert isinstance(info.value, TypeError)


def test_a_misspelled_option_with_a_shared_cache_is_named_too() -> None:
    cache = TokenCache(FakeCredential())
    with pytest.raises(UsageError, match=r"token_provider\(\) got an unexpected keyword argument 'jiter'"):
        token_provider(cache, jiter=1)  # type: ignore[call-arg]


def test_client_session_passes_aiohttp_options_through() -> None:
    aiohttp = pytest.importorskip("azure_ad_token_auth.aiohttp")

    async def main() -> tuple[Any, Any]:
        async with aiohttp.client_session(
            FakeCredential(), headers={"x-test": "1"}, refresh_margin=10.0, allow_http=True
        ) as session:
            return session.headers.get("x-test"), session._middlewares[0].cache._settings.refresh_margin

    assert asyncio.run(main()) == ("1", 10.0)


def test_the_new_errors_are_importable_from_the_package() -> None:
    assert azure_ad_token_auth.UsageError is UsageError
    assert azure_ad_token_auth.ConfigurationError is ConfigurationError
