"""Test helpers: fake credentials and loopback stand-ins for Azure, no Azure needed.

- `FakeCredential` / `AsyncFakeCredential`: tokens with a controllable lifetime, delay
  and failures, with counted calls.
- `ManagedIdentityEndpoint`: an App Service managed-identity endpoint on loopback, so
  azure-identity's real `DefaultAzureCredential` gets tokens from it.
- `AzureOpenAIStandIn`: an Azure OpenAI endpoint on loopback that checks every token.
"""

from ._environ import patched_environ
from ._fake import AsyncFakeCredential, FakeCredential
from ._managed_identity import ImdsEndpoint, ManagedIdentityEndpoint
from ._openai_stand_in import AzureOpenAIStandIn, RecordedRequest
from ._registry import TokenRegistry, fingerprint

__all__ = [
    "AsyncFakeCredential",
    "AzureOpenAIStandIn",
    "FakeCredential",
    "ImdsEndpoint",
    "ManagedIdentityEndpoint",
    "RecordedRequest",
    "TokenRegistry",
    "fingerprint",
    "patched_environ",
]
