"""FakeCredential and AsyncFakeCredential behave as azure-identity credentials do at their edges."""

from __future__ import annotations

import pytest
from azure.core.credentials import AccessToken

from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential, TokenRegistry

SCOPE = "https://cognitiveservices.azure.com/.default"


def test_no_scope_is_a_value_error_and_not_a_call() -> None:
    fake = FakeCredential()
    with pytest.raises(ValueError, match="at least one scope"):
        fake.get_token_info()
    with pytest.raises(ValueError, match="at least one scope"):
        fake.get_token()
    assert fake.calls == 0


async def test_async_no_scope_is_a_value_error_and_not_a_call() -> None:
    fake = AsyncFakeCredential()
    with pytest.raises(ValueError, match="at least one scope"):
        await fake.get_token_info()
    with pytest.raises(ValueError, match="at least one scope"):
        await fake.get_token()
    assert fake.calls == 0


def test_get_token_passes_garbage_through_and_claims_along() -> None:
    garbage = FakeCredential(result=lambda: None)
    assert garbage.get_token(SCOPE) is None
    fake = FakeCredential(lifetime=600)
    token = fake.get_token(SCOPE, claims='{"access_token":{}}')
    assert isinstance(token, AccessToken) and token.token == fake.tokens[-1]
    assert fake.claims == ['{"access_token":{}}']


async def test_async_get_token_awaits_its_delay_and_closes_as_a_context_manager() -> None:
    async with AsyncFakeCredential(lifetime=600, delay=0.01) as fake:
        token = await fake.get_token(SCOPE, claims="c")
        assert isinstance(token, AccessToken) and token.token == fake.tokens[-1]
        assert (fake.calls, fake.claims) == (1, ["c"])
    garbage = AsyncFakeCredential(result=lambda: "not a token")
    assert await garbage.get_token(SCOPE) == "not a token"  # type: ignore[comparison-overlap]


async def test_registry_tokens_are_issued_for_the_audience_of_the_scope_asked() -> None:
    registry = TokenRegistry()
    storage = FakeCredential(registry=registry).get_token("https://storage.azure.com/.default").token
    vault = (await AsyncFakeCredential(registry=registry).get_token_info("https://vault.azure.net/.default")).token
    assert [(registry.claims(t) or {}).get("aud") for t in (storage, vault)] == [
        "https://storage.azure.com",
        "https://vault.azure.net",
    ]
