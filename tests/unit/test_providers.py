"""`token_provider` and `async_token_provider` as called, without openai: scopes given
positionally (azure-identity's `get_bearer_token_provider(credential, *scopes)`), and the
slips named when the provider is made or called."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from azure_ad_token_auth import ConfigurationTypeError, UsageError, async_token_provider, token_provider
from azure_ad_token_auth.testing import FakeCredential

ONE, TWO = "api://one/.default", "api://two/.default"
MAKERS = [token_provider, async_token_provider]
MAKER_IDS = ["sync", "async"]


class ScopeRecorder(FakeCredential):
    """A FakeCredential that remembers the scopes of each call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self.asked.append(scopes)
        return super().get_token_info(*scopes, options=options)


def _token(provider: Any) -> str:
    """The provider's token, awaited (inside a coroutine) if it is async."""

    async def ask() -> str:
        return str(await provider())

    return asyncio.run(ask()) if provider.__name__ == "async_token_provider" else str(provider())


def _drop(objects: list[Any]) -> None:
    """Forget `objects` and collect them now."""
    import gc

    objects.clear()
    gc.collect()


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_several_scopes_go_positionally_as_with_get_bearer_token_provider(make: Any) -> None:
    recorder = ScopeRecorder()
    provider = make(recorder, ONE, TWO)
    assert _token(provider) == recorder.tokens[0]
    assert recorder.asked == [(ONE, TWO)]
    assert provider.cache.scopes == (ONE, TWO)


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_one_sequence_of_scopes_is_taken_as_the_scopes(make: Any) -> None:
    """This package's earlier form, `token_provider(credential, [scope1, scope2])`, still works."""
    for given in ([ONE, TWO], (ONE, TWO)):
        assert make(ScopeRecorder(), given).cache.scopes == (ONE, TWO)


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_scopes_as_a_keyword_are_refused_naming_the_positional_form(make: Any) -> None:
    credential = FakeCredential()
    with pytest.raises(UsageError, match=r"takes scopes positionally.*\(credential, 'https://"):
        make(credential, scopes=[ONE])
    assert credential.calls == 0


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_a_sequence_beside_other_scopes_is_refused(make: Any) -> None:
    credential = FakeCredential()
    with pytest.raises(ConfigurationTypeError, match=r"separate strings: \w+\(credential, scope1, scope2\)"):
        make(credential, [ONE], TWO)
    assert credential.calls == 0


# -- an async provider where a sync one belongs ------------------------------------------------


def test_an_async_provider_called_with_no_running_loop_is_refused_naming_token_provider() -> None:
    """What a sync client (`AzureOpenAI`) given `async_token_provider()` does: calls it from sync
    code. Refused, nothing fetched; `asyncio.run(provider())` is that same call."""
    credential = FakeCredential()
    provider = async_token_provider(credential)
    with pytest.raises(UsageError, match=r"no running event loop.*A sync client .* takes token_provider\(\)"):
        provider()  # type: ignore[unused-coroutine]  # it raises: nothing to await
    with pytest.raises(UsageError, match="await provider"):
        asyncio.run(provider())
    assert credential.calls == 0

    async def inside_a_coroutine() -> str:
        return await provider()

    assert asyncio.run(inside_a_coroutine()) == credential.tokens[0]


def test_once_served_on_a_loop_an_async_provider_names_the_fix_in_its_coroutines() -> None:
    """After a call inside a running loop the check stops (it costs a system call per call on
    Python 3.11); a sync client still gets no token, and the coroutine it was handed is named
    for the fix in Python's "never awaited" warning."""
    credential = FakeCredential()
    provider = async_token_provider(credential)

    async def inside_a_coroutine() -> str:
        return await provider()

    assert asyncio.run(inside_a_coroutine()) == credential.tokens[0]
    handed: list[Any] = [provider()]  # as a sync client calls it, then drops what it got
    assert not isinstance(handed[0], str)
    named = r"coroutine 'async_token_provider\(\) is for async clients; a sync client takes token_provider\(\)'"
    with pytest.warns(RuntimeWarning, match=named + " was never awaited"):
        _drop(handed)


# -- an async credential where a sync one belongs ----------------------------------------------


def test_an_azure_identity_aio_credential_given_to_token_provider_is_refused_naming_its_sync_class() -> None:
    pytest.importorskip("aiohttp", reason="azure.identity.aio's credentials need aiohttp's transport")
    from azure.identity.aio import ClientSecretCredential

    from azure_ad_token_auth import TokenCache

    credential = ClientSecretCredential("tenant", "client", "secret")  # nothing is sent by making it
    for given in (credential, TokenCache(credential)):
        with pytest.raises(
            ConfigurationTypeError,
            match=r"token_provider\(\) calls its credential from sync code, but azure.identity.aio.ClientSecretCredential "
            r"is async: use azure.identity.ClientSecretCredential\(\) instead \(async openai clients take "
            r"async_token_provider\(\)",
        ):
            token_provider(given)
    assert async_token_provider(credential).cache.is_async  # the async provider awaits it


def test_any_async_credential_given_to_token_provider_is_refused() -> None:
    from azure_ad_token_auth.testing import AsyncFakeCredential

    credential = AsyncFakeCredential()
    with pytest.raises(
        ConfigurationTypeError, match="AsyncFakeCredential is async: use a sync counterpart of AsyncFakeCredential"
    ):
        token_provider(credential)
    assert credential.calls == 0


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_an_endpoint_with_no_scheme_is_refused_showing_its_https_form(make: Any) -> None:
    """The message is the adapters' rule's (`HostPolicy`): the provider passes its endpoint on."""
    credential = FakeCredential()
    with pytest.raises(ValueError, match=r"https://res\.openai\.azure\.com"):
        make(credential, endpoint="res.openai.azure.com")
    assert credential.calls == 0
