"""Test helpers: fake credentials and loopback stand-ins for Azure, no Azure needed.

- `FakeCredential` / `AsyncFakeCredential`: tokens with a controllable lifetime, delay
  and failures, with counted calls.
- `ManagedIdentityEndpoint`: an App Service managed-identity endpoint on loopback, so
  azure-identity's real `DefaultAzureCredential` gets tokens from it.
- `AzureOpenAIStandIn`: an Azure OpenAI endpoint on loopback that checks every token.
"""

from ._fake import AsyncFakeCredential, FakeCredential
from ._servers import (
    AzureOpenAIStandIn,
    ManagedIdentityEndpoint,
    RecordedRequest,
    TokenRegistry,
    fingerprint,
)

__all__ = [
    "AsyncFakeCredential",
    "AzureOpenAIStandIn",
    "FakeCredential",
    "ManagedIdentityEndpoint",
    "RecordedRequest",
    "TokenRegistry",
    "fingerprint",
]
