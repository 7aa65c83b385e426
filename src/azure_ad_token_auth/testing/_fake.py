"""Fake credentials for tests: controllable lifetime, delay and failures, with counted calls."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

if TYPE_CHECKING:
    from ._token_registry import TokenRegistry

__all__ = ["AsyncFakeCredential", "FakeCredential"]

_serial = itertools.count(1)


class FakeCredential:
    """A sync azure-core credential that mints tokens locally.

    - `lifetime`: seconds each token lives (`expires_on = now + lifetime`).
    - `refresh_in`: if set, tokens carry `refresh_on = now + refresh_in`.
    - `delay`: seconds each call takes (a slow credential; `AzureCliCredential`-like).
    - `fail`: an exception to raise instead of a token (set or clear it at any time);
      `fail_times` limits it to that many calls.
    - `token_info=False` offers only `get_token` (no `refresh_on`), like older credentials.
    - `result`: a callable that replaces the token entirely (garbage, `None`, ...).
    - `registry`: issue tokens from a stand-in's `TokenRegistry` (JWT-shaped, accepted by
      `AzureOpenAIStandIn` and `BlobStorageStandIn`) instead of opaque local ones; each is
      issued for the audience of the first scope asked (`https://storage.azure.com` for
      `https://storage.azure.com/.default`), as Entra ID does.

    `calls` counts calls (thread-safe), `claims` lists the claims each call received,
    `tokens` every token issued.
    """

    def __init__(
        self,
        *,
        lifetime: float = 3600.0,
        refresh_in: float | None = None,
        delay: float = 0.0,
        fail: BaseException | None = None,
        fail_times: int | None = None,
        token_info: bool = True,
        result: Callable[[], Any] | None = None,
        registry: TokenRegistry | None = None,
    ) -> None:
        self.lifetime = lifetime
        self.refresh_in = refresh_in
        self.delay = delay
        self.fail = fail
        self.fail_times = fail_times
        self.result = result
        self.registry = registry
        self.calls = 0
        self.claims: list[str | None] = []
        self.tokens: list[str] = []
        self.release = threading.Event()  # for `hang()`: set it to let calls return
        self.release.set()
        self._lock = threading.Lock()
        if not token_info:
            self.get_token_info = None  # type: ignore[assignment]

    def hang(self) -> None:
        """Make every call block until `release.set()`."""
        self.release.clear()

    def _mint(self, scopes: tuple[str, ...], claims: str | None, wait: bool = True) -> AccessTokenInfo:
        with self._lock:
            self.calls += 1
            self.claims.append(claims)
            fail = self.fail
            if fail is not None and self.fail_times is not None:
                self.fail_times -= 1
                if self.fail_times <= 0:
                    self.fail, self.fail_times = None, None
        if wait:
            if self.delay:
                time.sleep(self.delay)
            self.release.wait()
        if fail is not None:
            raise fail
        if self.result is not None:
            return self.result()  # type: ignore[no-any-return]
        now = time.time()
        if self.registry is not None:
            token, expires_on = self.registry.issue(self.lifetime, audience=scopes[0].removesuffix("/.default"))
        else:
            token, expires_on = f"fake-{next(_serial)}-{secrets.token_urlsafe(24)}", int(now + self.lifetime)
        with self._lock:
            self.tokens.append(token)
        refresh_on = int(now + self.refresh_in) if self.refresh_in is not None else None
        return AccessTokenInfo(token, expires_on, refresh_on=refresh_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        if not scopes:
            raise ValueError("get_token_info requires at least one scope")
        return self._mint(scopes, (options or {}).get("claims"))

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if not scopes:
            raise ValueError("get_token requires at least one scope")
        info = self._mint(scopes, claims)
        if not isinstance(info, AccessTokenInfo):
            return info  # garbage, on purpose
        return AccessToken(info.token, info.expires_on)

    def __repr__(self) -> str:
        return f"<FakeCredential calls={self.calls} lifetime={self.lifetime}>"


class AsyncFakeCredential(FakeCredential):
    """The async twin of `FakeCredential` (like `azure.identity.aio` credentials).

    `delay` is awaited, so a slow call does not block the loop.
    """

    async def _wait(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        while not self.release.is_set():
            await asyncio.sleep(0.01)

    async def get_token_info(  # type: ignore[override]
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        if not scopes:
            raise ValueError("get_token_info requires at least one scope")
        await self._wait()
        return self._mint(scopes, (options or {}).get("claims"), wait=False)

    async def get_token(  # type: ignore[override]
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        if not scopes:
            raise ValueError("get_token requires at least one scope")
        await self._wait()
        info = self._mint(scopes, claims, wait=False)
        if not isinstance(info, AccessTokenInfo):
            return info  # garbage, on purpose
        return AccessToken(info.token, info.expires_on)

    async def close(self) -> None:
        """Async credentials are closed by their owner."""

    async def __aenter__(self) -> AsyncFakeCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()
