"""Exceptions raised by azure-ad-token-auth.

A credential's own exceptions (for example
`azure.core.exceptions.ClientAuthenticationError`) are never wrapped: they reach the
caller unchanged. The classes here cover what this package itself detects. None of
their messages ever contains a token.
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
    """An argument that cannot work (a scope without `/.default`, no scopes at all),
    refused when the adapter, provider or cache is built; the message names the fix."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """An argument of the wrong kind (a credential class instead of an instance, bytes or
    a number for `scopes`); a `TypeError`, and a `ConfigurationError` like the rest."""


class WrongClientError(AzureADTokenAuthError, TypeError):
    """An adapter was handed another HTTP client's request (the requests auth on an httpx
    client, the httpx auth on httpx2...); the message names the adapter to use. Raised
    before anything is sent."""


class MissingExtraError(AzureADTokenAuthError, ModuleNotFoundError):
    """An optional package is not installed; the message names the
    `pip install "azure-ad-token-auth[<extra>]"` that brings it."""
