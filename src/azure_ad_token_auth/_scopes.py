"""Scopes as Entra ID takes them: checked once, when an adapter, provider or cache is made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from ._clouds import DEFAULT_SCOPE
from ._errors import ConfigurationError, ConfigurationTypeError

__all__ = ["normalize_scopes"]


def normalize_scopes(scopes: object) -> tuple[str, ...]:
    """Scopes as a non-empty tuple of strings, each in a form Entra ID accepts.

    `ConfigurationTypeError` for what is not a string or a sequence of strings (bytes, a
    number, a dict); `ConfigurationError` for no scope, an empty one, or a bare resource
    URL such as `https://cognitiveservices.azure.com` (the message suggests
    `https://cognitiveservices.azure.com/.default`).
    """
    if isinstance(scopes, str):
        items: tuple[object, ...] = (scopes,)
    elif isinstance(scopes, (bytes, bytearray)):
        raise ConfigurationTypeError(
            f"scopes must be str, not {type(scopes).__name__}: decode it, "
            f"e.g. scopes={bytes(scopes).decode(errors='replace')!r}"
        )
    elif isinstance(scopes, Mapping) or not isinstance(scopes, Iterable):
        raise ConfigurationTypeError(
            f"scopes must be a string or a sequence of strings, such as {DEFAULT_SCOPE!r}; "
            f"got {type(scopes).__name__} {scopes!r}"
        )
    else:
        items = tuple(scopes)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationTypeError(
                f"scopes must hold only strings; got {type(item).__name__} {item!r} in {scopes!r}"
            )
        names.append(str(item))  # plain str, whatever subclass came in
    if not names:
        raise ConfigurationError(f"scopes must not be empty: give at least one, such as {DEFAULT_SCOPE!r}")
    for name in names:
        if not name:
            raise ConfigurationError(f"scopes must not hold an empty string (got {scopes!r})")
        fixed = _with_default(name)
        if fixed is not None:
            raise ConfigurationError(
                f"scope {name!r} is a resource, not a scope: Entra ID asks for {fixed!r} "
                "(the resource followed by /.default)"
            )
    return tuple(names)


def _with_default(scope: str) -> str | None:
    """`scope` with `/.default` added if it is a bare resource URL (`https://host`, `api://id/`), else None.

    A scope with a path (`https://graph.microsoft.com/User.Read`, `.../.default`) or no
    scheme (`openid`, `User.Read`) is left alone.
    """
    try:
        parts = urlsplit(scope)
    except ValueError:
        return None
    if parts.scheme and parts.netloc and parts.path in ("", "/") and not parts.query and not parts.fragment:
        return scope.rstrip("/") + "/.default"
    return None
