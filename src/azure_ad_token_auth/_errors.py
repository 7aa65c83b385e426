"""Exceptions raised by azure-ad-token-auth.

A credential's own exceptions (for example
`azure.core.exceptions.ClientAuthenticationError`) are never wrapped: they reach the
caller as raised, with one exception note added, the likely fix (`_advice`). The classes
here cover what this package itself detects; each keeps the built-in base callers may
already catch (`TypeError`, `ValueError`, ...). None of their messages ever contains a token.
"""

from __future__ import annotations

__all__ = [
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
]


class AzureADTokenAuthError(Exception):
    """Base class of the errors this package raises itself."""


class InvalidTokenError(AzureADTokenAuthError, TypeError):
    """The credential returned something that is not a usable access token."""


class TokenAcquisitionTimeout(AzureADTokenAuthError, TimeoutError):
    """No token arrived within the cache's `timeout` (the credential hangs)."""


class InsecureTransportError(AzureADTokenAuthError, ValueError):
    """A token would have been sent over plain http to a host that is not loopback."""


class ConfigurationError(AzureADTokenAuthError, ValueError):
    """An option or argument that cannot work (a scope without `/.default`, a negative
    `timeout`), refused when the adapter, provider or cache is built; the message names the fix."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """An argument of the wrong kind (a credential class instead of an instance, bytes or
    a number for `scopes`); a `TypeError`, and a `ConfigurationError` like the rest."""


class UsageError(AzureADTokenAuthError, TypeError):
    """This package was called in a way it does not support: an unknown keyword option, an
    option of the wrong type, an async credential from sync code."""


class WrongClientError(UsageError):
    """An adapter was handed another HTTP client's request (the requests auth on an httpx
    client, the httpx auth on httpx2...); the message names the adapter to use. Raised
    before anything is sent."""


class MissingExtraError(AzureADTokenAuthError, ModuleNotFoundError):
    """An optional package is not installed; the message names the
    `pip install "azure-ad-token-auth[<extra>]"` that brings it."""


class UnsupportedVersionError(AzureADTokenAuthError, RuntimeError):
    """The installed openai is not one the function called supports (or cannot be told)."""


class TokenRejectedError(AzureADTokenAuthError):
    """A service answered a request carrying the token with a 401 (`status`, `challenge`).

    Never raised alone: when the credential fails while renewing after such a 401 that
    came with a `WWW-Authenticate` challenge (a CAE claims challenge among them), the
    credential's own error reaches the caller with this as its `__cause__`, as azure-core
    chains an `HttpResponseError`. The challenge is the header as received, with the
    rejected token blanked out should the service have echoed it.
    """

    def __init__(self, status: int, challenge: str) -> None:
        super().__init__(f"the service answered {status} to the token; WWW-Authenticate: {challenge}")
        self.status = status
        self.challenge = challenge
