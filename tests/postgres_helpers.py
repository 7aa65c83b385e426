"""What the PostgreSQL tests share: credentials minting the stand-in's tokens, an event-loop ticker.

The tokens come from a `TokenRegistry` with the audience Azure Database for PostgreSQL
checks (`AUDIENCE`), so `AzurePostgresStandIn` judges them as Azure would; each credential
call is counted and timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from azure_ad_token_auth.postgres import POSTGRES_SCOPE
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential, TokenRegistry

PUBLIC = "https://ossrdbms-aad.database.windows.net/.default"
GOVERNMENT = "https://ossrdbms-aad.database.usgovcloudapi.net/.default"
CHINA = "https://ossrdbms-aad.database.chinacloudapi.cn/.default"
AUDIENCE = POSTGRES_SCOPE.removesuffix("/.default")  # the tokens' `aud`


def _issue(credential: FakeCredential, claims: dict[str, object] | None) -> AccessTokenInfo:
    assert credential.registry is not None
    refresh_in = credential.refresh_in
    extra = dict(claims or {})
    if refresh_in is not None:
        # A token whose renewal falls due `refresh_in` s from now, as a credential's own cache hands
        # one out mid-life: issued a lifetime ago, so that `refresh_on` is one the cache follows
        # (not one within the first quarter of the token's life, which it takes for a mistake).
        extra.setdefault("iat", int(time.time() - credential.lifetime))
    token, expires_on = credential.registry.issue(credential.lifetime, audience=AUDIENCE, claims=extra or None)
    credential.tokens.append(token)
    return AccessTokenInfo(
        token, expires_on, refresh_on=math.ceil(time.time() + refresh_in) if refresh_in is not None else None
    )


class PostgresCredential(FakeCredential):
    """A sync credential issuing `registry`'s PostgreSQL tokens; `intervals` holds each call's
    (start, end) on `time.monotonic()`, `scopes` the scopes asked for."""

    def __init__(self, registry: TokenRegistry, *, claims: dict[str, object] | None = None, **kwargs: Any) -> None:
        super().__init__(result=self._issue, **kwargs)
        self.registry = registry
        self.extra_claims = claims
        self.intervals: list[tuple[float, float]] = []
        self.scopes: list[tuple[str, ...]] = []
        self._times = threading.Lock()

    def _issue(self) -> AccessTokenInfo:
        return _issue(self, self.extra_claims)

    @contextlib.contextmanager
    def _timed(self, scopes: tuple[str, ...]) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            with self._times:
                self.intervals.append((start, time.monotonic()))
                self.scopes.append(scopes)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        with self._timed(scopes):
            return super().get_token_info(*scopes, options=options)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._timed(scopes):
            return super().get_token(*scopes, **kwargs)


class AsyncPostgresCredential(AsyncFakeCredential):
    """The async twin (like `azure.identity.aio`): its `delay` is awaited on the loop."""

    def __init__(self, registry: TokenRegistry, **kwargs: Any) -> None:
        super().__init__(result=self._issue, **kwargs)
        self.registry = registry

    def _issue(self) -> AccessTokenInfo:
        return _issue(self, None)


class LoopTicker:
    """Counts the turns of an event loop, to tell whether something blocked it.

    `ticks` holds `time.monotonic()` at each turn (a `sleep(interval)` apart while the loop
    runs freely). `during(start, end)` counts the turns inside an interval: a credential call
    that blocked the loop has none inside it, however long it took.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.ticks: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def during(self, start: float, end: float) -> int:
        return sum(start < tick < end for tick in self.ticks)
