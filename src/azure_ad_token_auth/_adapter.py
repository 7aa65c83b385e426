"""What every adapter holds: its token cache, and the rule for where the token may go."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._cache import TokenCache
from ._policy import HostPolicy
from ._registry import DEFAULT_SCOPE, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["AdapterBase"]


class AdapterBase:
    """Common construction of the requests, httpx and aiohttp adapters.

    `credential` is any azure-core credential or a `TokenCache` to share; keyword
    options configure the cache (see `TokenCache`). `allow_http` and `allowed_hosts`
    set the `HostPolicy`.
    """

    def __init__(
        self,
        credential: Credential | TokenCache | None = None,
        scopes: str | Sequence[str] = DEFAULT_SCOPE,
        *,
        allow_http: bool = False,
        allowed_hosts: Iterable[str] | None = None,
        **options: Unpack[CacheOptions],
    ) -> None:
        self.cache = resolve_cache(credential, scopes, options, type(self).__name__)
        self._policy = HostPolicy(allow_http, allowed_hosts)
        # `HostPolicy.allows_url`'s own first test, hoisted for the requests adapter's
        # per-request path: with no host list an https URL needs no look-up.
        self._https_anywhere = self._policy.https_anywhere

    @property
    def policy(self) -> HostPolicy:
        """Where the token may go (`HostPolicy.check_url(url)` raises where it may not)."""
        return self._policy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cache!r}>"
