"""A package's public names, imported on first use (PEP 562 `__getattr__`).

Importing any submodule runs its package's `__init__` first: were the package to import its
public names at once, loading the pytest plugin (`azure_ad_token_auth.testing.plugin`) would
import requests and azure-core into every test run of a project that has this package
installed, whether it tests anything with it or not. So each name is imported when first
used, and kept in the package's namespace from then on (no `__getattr__` call after that).
Type checkers see the same names through the package's `if TYPE_CHECKING:` imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose public names live in the modules of
    `homes` (a relative module name: the names it defines)."""
    where = {name: module for module, names in homes.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
