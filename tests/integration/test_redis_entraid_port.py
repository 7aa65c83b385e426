"""redis-entraid's tests of its credential provider (tests/test_cred_provider.py), ported to ours.

Each test keeps the original's assertion; what differs is how the provider is made and
where the tokens come from: azure-identity's real credentials against the loopback
stand-ins (Entra ID over TLS for the service principal, the App Service managed-identity
endpoint), where the originals need a real tenant. docs/redis.md ("Coming from
redis-entraid") lists each difference and why.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from time import sleep
from typing import Any

import pytest

from azure_ad_token_auth.testing import EntraIdStandIn, ManagedIdentityEndpoint

pytest.importorskip("redis")
from azure_ad_token_auth.redis import RedisCredentialProvider, credential_provider

SCOPE = "https://redis.azure.com/.default"
USER_ASSIGNED_CLIENT_ID = "00000000-0000-0000-0000-0000000000d1"


@pytest.fixture
def made() -> Iterator[list[RedisCredentialProvider]]:
    providers: list[RedisCredentialProvider] = []
    yield providers
    for provider in providers:
        provider.close()
    gc.collect()


def _provider(made: list[RedisCredentialProvider], credential: Any) -> RedisCredentialProvider:
    provider = credential_provider(credential)
    made.append(provider)
    return provider


@pytest.fixture(params=["Service principal"])
def service_principal(azure_entra_id: EntraIdStandIn) -> Any:
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        azure_entra_id.tenant,
        azure_entra_id.client_id,
        azure_entra_id.client_secret,
        **azure_entra_id.credential_kwargs(),
    )


@pytest.fixture(params=["Managed Identity (System-assigned)", "Managed Identity (User-assigned)"])
def managed_identity(request: pytest.FixtureRequest, azure_managed_identity: ManagedIdentityEndpoint) -> Any:
    from azure.identity import ManagedIdentityCredential

    if request.param.endswith("(User-assigned)"):
        return ManagedIdentityCredential(client_id=USER_ASSIGNED_CLIENT_ID)
    return ManagedIdentityCredential()


def test_get_credentials(service_principal: Any, made: list[RedisCredentialProvider]) -> None:
    credentials = _provider(made, service_principal).get_credentials()
    assert len(credentials) == 2


def test_get_credentials_managed_identity(managed_identity: Any, made: list[RedisCredentialProvider]) -> None:
    credentials = _provider(made, managed_identity).get_credentials()
    assert len(credentials) == 2


def test_get_credentials_default_azure_credential_env(
    azure_entra_id: EntraIdStandIn, made: list[RedisCredentialProvider]
) -> None:
    """Default Azure Credentials (via EnvironmentCredential)."""
    from azure.identity import DefaultAzureCredential

    with azure_entra_id.patched_env("secret"):
        credential = DefaultAzureCredential(disable_instance_discovery=True)
        credentials = _provider(made, credential).get_credentials()
    assert len(credentials) == 2


def test_get_credentials_default_azure_credential_managed(
    azure_managed_identity: ManagedIdentityEndpoint, made: list[RedisCredentialProvider]
) -> None:
    """Default Azure Credentials (via ManagedIdentityCredential)."""
    from azure.identity import DefaultAzureCredential

    credentials = _provider(made, DefaultAzureCredential()).get_credentials()
    assert len(credentials) == 2


async def test_get_credentials_async(service_principal: Any, made: list[RedisCredentialProvider]) -> None:
    credentials = await _provider(made, service_principal).get_credentials_async()
    assert len(credentials) == 2


async def test_get_credentials_async_managed_identity(
    managed_identity: Any, made: list[RedisCredentialProvider]
) -> None:
    credentials = await _provider(made, managed_identity).get_credentials_async()
    assert len(credentials) == 2


# The originals make renewal due at once (`expiration_refresh_ratio` of 0.00002) and wait 1 s. Ours
# renews at `refresh_margin` before expiry, capped at half the token's life: 2 s tokens from the
# identity endpoint are renewed within about 1 s, so these wait 1.5 s.
RENEWAL_WAIT = 1.5


@pytest.fixture
def short_lived(azure_managed_identity: ManagedIdentityEndpoint) -> Any:
    from azure.identity import ManagedIdentityCredential

    azure_managed_identity.set_lifetime(2)
    return ManagedIdentityCredential()


def test_get_credentials_executes_on_next(short_lived: Any, made: list[RedisCredentialProvider]) -> None:
    credential_provider = _provider(made, short_lived)
    tokens = []

    def on_next(token: Any) -> None:
        nonlocal tokens
        tokens.append(token)

    credential_provider.on_next(on_next)

    # Run token manager
    credential_provider.get_credentials()
    sleep(RENEWAL_WAIT)

    assert len(tokens) > 0


async def test_get_credentials_async_executes_on_next(short_lived: Any, made: list[RedisCredentialProvider]) -> None:
    credential_provider = _provider(made, short_lived)
    tokens = []

    def on_next(token: Any) -> None:
        nonlocal tokens
        tokens.append(token)

    credential_provider.on_next(on_next)

    # Run token manager
    await credential_provider.get_credentials_async()
    await asyncio.sleep(RENEWAL_WAIT)

    assert len(tokens) > 0


def test_get_credentials_executes_on_error(short_lived: Any, made: list[RedisCredentialProvider]) -> None:
    credential_provider = _provider(made, short_lived)
    errors = []

    def on_next(token: Any) -> None:
        raise Exception("Some exception")

    def on_error(error: Exception) -> None:
        nonlocal errors
        errors.append(error)
        raise error

    credential_provider.on_next(on_next)
    credential_provider.on_error(on_error)

    # Run token manager
    credential_provider.get_credentials()
    sleep(RENEWAL_WAIT)

    assert len(errors) > 0
    assert str(errors[0]) == "Some exception"


async def test_get_credentials_async_executes_on_error(short_lived: Any, made: list[RedisCredentialProvider]) -> None:
    credential_provider = _provider(made, short_lived)
    errors = []

    async def on_next(token: Any) -> None:
        raise Exception("Some exception")

    async def on_error(error: Exception) -> None:
        nonlocal errors
        errors.append(error)
        raise error

    credential_provider.on_next(on_next)
    credential_provider.on_error(on_error)

    # Run token manager
    await credential_provider.get_credentials_async()
    await asyncio.sleep(RENEWAL_WAIT)

    assert len(errors) > 0
    assert str(errors[0]) == "Some exception"
