"""Optional packages: import one, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingExtraError

__all__ = ["missing_extra", "require"]


def missing_extra(error: ModuleNotFoundError, extra: str, feature: str) -> MissingExtraError:
    """The error to raise (`from error`) when importing `feature`'s package failed."""
    missing = MissingExtraError(
        f'{feature} needs the {extra!r} extra: pip install "azure-ad-token-auth[{extra}]" ({error})',
        name=error.name,
    )
    return missing


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`import module`, or `MissingExtraError` naming `extra` (the original error chained)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise missing_extra(error, extra, feature) from error
