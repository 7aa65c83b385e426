"""Exceptions raised by azure-ad-token-auth.

A credential's own exceptions (for example
`azure.core.exceptions.ClientAuthenticationError`) are never wrapped: they reach the
caller unchanged. The classes here cover what this package itself detects. None of
their messages ever contains a token.
"""

from __future__ import annotations

__all__ = [
    "AzureADTokenAuthError",
    "InsecureTransportError",
    "InvalidTokenError",
    "TokenAcquisitionTimeout",
]


class AzureADTokenAuthError(Exception):
    """Base class of the errors this package raises itself."""


class InvalidTokenError(AzureADTokenAuthError, TypeError):
    """The credential returned something that is not a usable access token."""


class TokenAcquisitionTimeout(AzureADTokenAuthError, TimeoutError):
    """No token arrived within the cache's `timeout` (the credential hangs)."""


class InsecureTransportError(AzureADTokenAuthError, ValueError):
    """A token would have been sent over plain http to a host that is not loopback."""
