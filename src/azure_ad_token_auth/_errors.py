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
    "InsecureTransportError",
    "InvalidTokenError",
    "TokenAcquisitionTimeout",
    "UnsupportedVersionError",
    "UsageError",
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
    """An option or argument has a value this package cannot work with (raised at construction)."""


class UsageError(AzureADTokenAuthError, TypeError):
    """This package was called in a way it does not support: an unknown keyword option, an
    option of the wrong type, an async credential from sync code."""


class UnsupportedVersionError(AzureADTokenAuthError, RuntimeError):
    """The installed openai is not one the function called supports (or cannot be told)."""
