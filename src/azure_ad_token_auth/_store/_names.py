"""The store's file names: one format, made here and recognised here.

Every file the store makes per key is named `aadta-<D>...`, `D` the 32 hex digits of its
key's digest: `aadta-D.json` (the record), `aadta-D.lock` (the OS lock),
`aadta-D.<F>.rejected` (a marker per refused token, `F` its fingerprint) and
`.aadta-D.<R>.tmp` (a file being made, `R` 16 random hex digits). The clean-up considers
only names of exactly this shape; a name is a claim, not a proof (`_records` checks what
the file holds before removing it), but no other program's file can be mistaken for one
by accident. One file is the store's own, not a key's, and the clean-up never considers
it: `aadta-salt` (`SALT`, the salt of the key's hashes, made through `.aadta-salt.<R>.tmp`).
"""

from __future__ import annotations

import re
import secrets
from typing import Literal, NamedTuple

__all__ = ["SALT", "StoreName", "lock_name", "marker_name", "parse_name", "record_name", "salt_temp_name", "temp_name"]

_PREFIX = "aadta-"
SALT = f"{_PREFIX}salt"
_NAME = re.compile(
    r"(?P<dot>\.)?aadta-(?P<digest>[0-9a-f]{32})"
    r"\.(?:(?P<kind>json|lock)|(?P<fingerprint>[0-9a-f]{8})\.rejected|[0-9a-f]{16}\.tmp)"
)

Kind = Literal["json", "lock", "rejected", "tmp"]


class StoreName(NamedTuple):
    """A directory entry named as the store names its files."""

    name: str
    kind: Kind
    digest: str
    fingerprint: str | None
    """A rejection marker's token fingerprint."""


def record_name(digest: str) -> str:
    return f"{_PREFIX}{digest}.json"


def lock_name(digest: str) -> str:
    return f"{_PREFIX}{digest}.lock"


def marker_name(digest: str, fingerprint: str) -> str:
    return f"{_PREFIX}{digest}.{fingerprint}.rejected"


def temp_name(digest: str) -> str:
    return f".{_PREFIX}{digest}.{secrets.token_hex(8)}.tmp"


def salt_temp_name() -> str:
    return f".{SALT}.{secrets.token_hex(8)}.tmp"


def parse_name(name: str) -> StoreName | None:
    """`name` as one of the store's names, or None for anything else."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    is_temp = name.endswith(".tmp")
    if is_temp != (match["dot"] is not None):  # only a temp file starts with a dot
        return None
    kind: Kind = "tmp" if is_temp else "rejected" if match["fingerprint"] else match["kind"]  # type: ignore[assignment]
    return StoreName(name, kind, match["digest"], match["fingerprint"])
