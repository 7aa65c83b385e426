"""The token registry the loopback stand-ins share: issues JWT-shaped tokens, judges them."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from .._cache import fingerprint

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_AUDIENCE",
    "DEFAULT_SUBJECT",
    "DEFAULT_TENANT",
    "TokenRegistry",
    "TokenStatus",
    "fingerprint",
]

TokenStatus = Literal["valid", "expired", "unknown", "revoked"]

DEFAULT_TENANT: Final = "00000000-0000-0000-0000-0000000000aa"
DEFAULT_SUBJECT: Final = "00000000-0000-0000-0000-0000000000b0"
DEFAULT_APP_ID: Final = "00000000-0000-0000-0000-0000000000c0"
DEFAULT_AUDIENCE: Final = "https://cognitiveservices.azure.com"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class _Issued:
    expires_on: int
    claims: dict[str, object]


class TokenRegistry:
    """Thread-safe record of the tokens a loopback authority has issued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Issued] = {}
        self._revoked: set[str] = set()

    def issue(
        self,
        lifetime: float,
        *,
        claims: Mapping[str, object] | None = None,
        subject: str = DEFAULT_SUBJECT,
        audience: str = DEFAULT_AUDIENCE,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[str, int]:
        """Issue a unique JWT-shaped token; return ``(token, expires_on)``."""
        now = time.time()
        expires_on = int(now + lifetime)
        payload: dict[str, object] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": expires_on,
            "tid": tenant,
            "oid": subject,
            "sub": subject,
            "appid": DEFAULT_APP_ID,
            "idtyp": "app",
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if claims:
            payload.update(claims)
        header = {"alg": "RS256", "typ": "JWT", "kid": "loopback"}
        token = ".".join(
            (_b64url(_json_bytes(header)), _b64url(_json_bytes(payload)), _b64url(secrets.token_bytes(32)))
        )
        with self._lock:
            self._tokens[token] = _Issued(expires_on, payload)
        return token, expires_on

    def check(self, token: str) -> TokenStatus:
        """Classify ``token`` against the clock as it reads right now."""
        with self._lock:
            issued = self._tokens.get(token)
            revoked = token in self._revoked
        if issued is None:
            return "unknown"
        if revoked:
            return "revoked"
        if time.time() >= issued.expires_on:
            return "expired"
        return "valid"

    def revoke(self, token: str) -> None:
        """Revoke an issued token; raise ``KeyError`` for a token never issued."""
        with self._lock:
            if token not in self._tokens:
                raise KeyError(f"token {fingerprint(token)} was not issued here")
            self._revoked.add(token)

    @property
    def issued(self) -> int:
        """How many tokens have been issued."""
        with self._lock:
            return len(self._tokens)

    def expires_on(self, token: str) -> int | None:
        """Expiry (epoch seconds) of an issued token, or ``None`` if unknown."""
        with self._lock:
            issued = self._tokens.get(token)
        return None if issued is None else issued.expires_on

    def claims(self, token: str) -> dict[str, object] | None:
        """A copy of an issued token's payload claims, or ``None`` if unknown."""
        with self._lock:
            issued = self._tokens.get(token)
        return None if issued is None else dict(issued.claims)
