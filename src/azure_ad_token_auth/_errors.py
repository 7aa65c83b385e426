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
    "TokenRejectedError",
]


class AzureADTokenAuthError(Exception):
    """Base class of the errors this package raises itself."""


class InvalidTokenError(AzureADTokenAuthError, TypeError):
    """The credential returned something that is not a usable access token."""


class TokenAcquisitionTimeout(AzureADTokenAuthError, TimeoutError):
    """No token arrived within the cache's `timeout` (the credential hangs)."""


class InsecureTransportError(AzureADTokenAuthError, ValueError):
    """A token would have been sent over plain http to a host that is not loopback."""


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
