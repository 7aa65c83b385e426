"""Refreshing Microsoft Entra ID (Azure AD) tokens for requests, httpx and openai.

```python
from azure_ad_token_auth import AzureADTokenAuth

session.auth = AzureADTokenAuth()  # DefaultAzureCredential, cognitiveservices scope
```

Every adapter draws from a `TokenCache`: thread-safe, single-flight, renewed ahead
of expiry. The httpx and httpx2 auths live in `azure_ad_token_auth.httpx` and
`azure_ad_token_auth.httpx2` so that neither package is needed to import this one.
`CachedCredential` (and `AsyncCachedCredential`) put Azure SDK clients on the same caches.
Each public name is imported on first use (`_lazy`), so importing a submodule alone (the
pytest plugin) imports none of them.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

if TYPE_CHECKING:
    from ._cache import CachedToken, CacheOptions, CacheStatus, TokenCache, fingerprint
    from ._cached_credential import AsyncCachedCredential, CachedCredential
    from ._clouds import DEFAULT_SCOPE
    from ._errors import (
        AzureADTokenAuthError,
        ConfigurationError,
        ConfigurationTypeError,
        InsecureTransportError,
        InvalidTokenError,
        MissingExtraError,
        TokenAcquisitionTimeout,
        TokenRejectedError,
        UnsupportedVersionError,
        UsageError,
        WrongClientError,
    )
    from ._log_filter import CredentialHeaderFilter
    from ._openai import install_openai_session, uninstall_openai_session
    from ._openai_client import async_azure_openai_client, azure_openai_client
    from ._providers import AsyncTokenProvider, TokenProvider, async_token_provider, token_provider
    from ._requests import AzureADTokenAuth, TokenRefresh
else:  # imported on first use (`_lazy`): the same names, module by module
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "._cache": ("CachedToken", "CacheOptions", "CacheStatus", "TokenCache", "fingerprint"),
            "._cached_credential": ("AsyncCachedCredential", "CachedCredential"),
            "._clouds": ("DEFAULT_SCOPE",),
            "._errors": (
                "AzureADTokenAuthError",
                "ConfigurationError",
                "ConfigurationTypeError",
                "InsecureTransportError",
                "InvalidTokenError",
                "MissingExtraError",
                "TokenAcquisitionTimeout",
                "TokenRejectedError",
                "UnsupportedVersionError",
                "UsageError",
                "WrongClientError",
            ),
            "._log_filter": ("CredentialHeaderFilter",),
            "._openai": ("install_openai_session", "uninstall_openai_session"),
            "._openai_client": ("async_azure_openai_client", "azure_openai_client"),
            "._providers": ("AsyncTokenProvider", "TokenProvider", "async_token_provider", "token_provider"),
            "._requests": ("AzureADTokenAuth", "TokenRefresh"),
        },
    )

__all__ = [
    "DEFAULT_SCOPE",
    "AsyncCachedCredential",
    "AsyncTokenProvider",
    "AzureADTokenAuth",
    "AzureADTokenAuthError",
    "CacheOptions",
    "CacheStatus",
    "CachedCredential",
    "CachedToken",
    "ConfigurationError",
    "ConfigurationTypeError",
    "CredentialHeaderFilter",
    "InsecureTransportError",
    "InvalidTokenError",
    "MissingExtraError",
    "TokenAcquisitionTimeout",
    "TokenCache",
    "TokenProvider",
    "TokenRefresh",
    "TokenRejectedError",
    "UnsupportedVersionError",
    "UsageError",
    "WrongClientError",
    "__version__",
    "async_azure_openai_client",
    "async_token_provider",
    "azure_openai_client",
    "fingerprint",
    "install_openai_session",
    "token_provider",
    "uninstall_openai_session",
]
