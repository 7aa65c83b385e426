"""A token's claims, read from its JWT payload WITHOUT checking its signature.

For display (the `token` command) and for refusing, never for trusting: the shared store
refuses a stored token whose identity claims differ from those of this process's own
tokens (`identity_claims`), a check that can only ever take a token away; and renewal
planning counts a token's lifetime from its issue (`issued_at`), so that a token arriving
mid-life is not taken for one whose `refresh_on` comes too early.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ._timing import is_number

__all__ = ["IDENTITY_CLAIMS", "decode_claims", "identity_claims", "issued_at"]

IDENTITY_CLAIMS = ("tid", "oid", "appid", "azp")
"""The claims naming whom a token was issued to: tenant, object (user or service
principal), and the application (`appid` in v1 tokens, `azp` in v2)."""


def decode_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, decoded WITHOUT checking its signature; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def identity_claims(token: str) -> dict[str, str] | None:
    """The `IDENTITY_CLAIMS` a token carries, or None for a token that is not a readable
    JWT (an opaque or encrypted one): two tokens with different answers were issued to
    different identities."""
    claims = decode_claims(token)
    if claims is None:
        return None
    return {name: value for name in IDENTITY_CLAIMS if isinstance(value := claims.get(name), str)}


def issued_at(token: str) -> float | None:
    """The token's issue time (`iat`, Unix seconds), or None if it is not a JWT carrying one."""
    claims = decode_claims(token)
    value = claims.get("iat") if claims is not None else None
    return float(value) if isinstance(value, (int, float)) and is_number(value) else None
