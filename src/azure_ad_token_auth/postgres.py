"""Passwords for Azure Database for PostgreSQL: the Entra ID token, from the library's cache.

Azure checks the token when a connection opens, and only then: every new connection
(a pool growing, a recycled connection) needs one that is valid at that moment. These
providers hand out the cached token and renew it ahead of expiry, one credential call
per renewal however many connections open at once:

```python
password = password_provider(host=HOST)              # psycopg, psycopg_pool, SQLAlchemy
conn = psycopg.connect(host=HOST, user=USER, dbname="postgres", sslmode="verify-full", password=password())

apassword = async_password_provider(host=HOST)       # asyncpg, AsyncConnectionPool, async engines
conn = await asyncpg.connect(host=HOST, user=USER, database="postgres", ssl="verify-full", password=apassword)
```

No driver is imported here: the providers return strings (or coroutines of them), which
every driver takes. See docs/postgres.md for each driver and pool.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ._cache import CachedToken, TokenCache
from ._clouds import POSTGRES_SCOPE, foreign_scope, scope_for_host
from ._errors import ConfigurationError, ConfigurationTypeError, InvalidTokenError, UsageError
from ._registry import resolve_cache
from ._settings import CacheOptions
from ._state import usable

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["HOST_VARIABLE", "POSTGRES_SCOPE", "async_password_provider", "password_provider", "user_name"]

HOST_VARIABLE = "PGHOST"
"""Where libpq (psycopg) and asyncpg find the server when no host is given: read when `host=` is not."""

_log = logging.getLogger("azure_ad_token_auth")

# A new connection's TCP and TLS handshakes and startup take a moment, and the server checks
# the token only once they are done: a token about to expire is not handed to one. The least
# life left it needs is a quarter of the life it had when first handed out here, at most this.
_GRACE = 5.0
_POLL = 0.01  # how often a caller waiting for the renewal looks at the cache


def _scope_of(host: object, caller: str) -> str:
    """The scope for `host` (a name, or libpq's comma-separated list of them): its cloud's.

    No host at all is the public cloud's, as documented. A host no rule knows (a custom
    DNS name, an IP address, a Unix socket directory) gets the public cloud's too, with
    one WARNING, so that the guess is never silent.
    """
    if host is None or host == "":  # libpq's default too: PGHOST, else a local socket
        host = os.environ.get(HOST_VARIABLE) or None
        if host is None:
            return POSTGRES_SCOPE
    if not isinstance(host, str):
        raise ConfigurationTypeError(
            f"{caller}(host=...) takes the server's name as a str, such as "
            f"'myserver.postgres.database.azure.com'; got {type(host).__name__}"
        )
    names = [name.strip() for name in host.split(",") if name.strip()]
    scopes = {name: scope_for_host(name, "postgres") for name in names}
    known = sorted({scope for scope in scopes.values() if scope is not None})
    if len(known) > 1:
        raise ConfigurationError(
            f"{caller}(host={host!r}) names servers in different Azure clouds ({', '.join(known)}): "
            "one token cannot serve them all; make a provider per cloud"
        )
    scope = known[0] if known else POSTGRES_SCOPE
    unknown = [name for name, found in scopes.items() if found is None]
    if unknown or not names:
        _log.warning(
            "%s(): %r is not the name of an Azure Database for PostgreSQL server "
            "(<server>.postgres.database.azure.com, .usgovcloudapi.net or .chinacloudapi.cn); using the scope %s. "
            "For a server in Azure Government or Azure China reached under another name, pass scopes=",
            caller,
            ", ".join(unknown) or host,
            scope,
        )
    return scope


def _cache_for(
    credential: Credential | TokenCache | None,
    host: str | None,
    scopes: str | Sequence[str] | None,
    options: CacheOptions,
    caller: str,
) -> TokenCache:
    foreign = foreign_scope(scopes, "postgres")
    if foreign is not None:
        raise ConfigurationError(
            f"{caller}(scopes={foreign[0]!r}): that scope is for {foreign[1]}, not Azure Database for PostgreSQL; "
            f"leave scopes out (the host's cloud's, default {POSTGRES_SCOPE!r})"
        )
    wanted = scopes if scopes is not None else _scope_of(host, caller)
    return resolve_cache(credential, wanted, options, caller)


class _Lifetimes:
    """Whether a token has life enough left for a connection to open with it (see `_GRACE`)."""

    __slots__ = ("_seen", "_token")

    def __init__(self) -> None:
        self._token, self._seen = "", 0.0  # the last token handed out, and when it first was

    def lasting(self, token: str, entry: CachedToken | None, now: float) -> bool:
        if entry is None:
            return True  # dropped (a 401 elsewhere) after the cache handed it out valid
        if entry.token != token:
            return False  # renewed meanwhile: ask again for the new one
        if token != self._token:
            self._token, self._seen = token, now
        return entry.expires_on - now >= min(_GRACE, (entry.expires_on - self._seen) / 4)


class _PasswordProvider:
    """A zero-argument callable returning the current token (see `password_provider`)."""

    __slots__ = ("_lifetimes", "_renewals", "_warned", "cache")

    def __init__(self, cache: TokenCache) -> None:
        self.cache = cache
        self._lifetimes = _Lifetimes()
        # Renewals started on an event loop, held until done (the loop keeps only weak references).
        self._renewals: set[asyncio.Task[str]] = set()
        self._warned = False  # about a renewal stranded on a loop that stopped: once per provider

    def __call__(self) -> str:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._off_loop()
        return self._on_loop(loop)

    def _off_loop(self) -> str:
        if self.cache.is_async:
            raise UsageError(
                f"password_provider() holds an async credential ({type(self.cache.credential).__name__}), "
                "which only an event loop can await, and was called outside one: use a sync credential "
                "(azure.identity, not azure.identity.aio) or async_password_provider()"
            )
        token = self.cache.get_token()
        while not self._lifetimes.lasting(token, self.cache.current, time.time()):
            # About to expire: the renewal the cache started (get_token starts it when due) lands
            # meanwhile; once the token expires, get_token waits for it or raises its error.
            time.sleep(_POLL)
            token = self.cache.get_token()
        return token

    def _on_loop(self, loop: asyncio.AbstractEventLoop) -> str:
        """On an event loop's thread (an async engine's `do_connect`, an `AsyncConnectionPool`'s
        sync `kwargs`): answer from the cache at once; a renewal runs as a task of this loop
        (a sync credential in a thread, an async one awaited here), never in the caller."""
        now = time.time()
        entry = self.cache.current
        if entry is not None and now < entry.refresh_at:
            return entry.token
        self._drop_stranded(loop)
        if not self._renewals:
            task = loop.create_task(self.cache.get_token_async())
            self._renewals.add(task)
            task.add_done_callback(self._renewed)
        held = usable(entry, now)
        if held is not None and self._lifetimes.lasting(held.token, held, now):
            return held.token
        raise UsageError(
            "password_provider() was called on a running event loop with no valid token (or one about to expire, "
            "too late for a new connection): waiting for the "
            "credential would block the loop (a fetch has started, so a later connection gets the token). "
            "Use async_password_provider(): asyncpg's password=, a coroutine for AsyncConnectionPool's kwargs, "
            "SQLAlchemy's async_creator=; or await it once at start-up (both providers share one cache)"
        )

    def _drop_stranded(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget renewals started on another loop that no longer runs (`run_until_complete`
        returned, the loop closed): they may never finish, and while one is held no other
        starts, so a renewal is started again on `loop`, which runs."""
        stranded = {task for task in self._renewals if task.get_loop() is not loop and not task.get_loop().is_running()}
        if not stranded:
            return
        self._renewals -= stranded
        _log.log(
            logging.DEBUG if self._warned else logging.WARNING,
            "password_provider(): a token renewal started on an event loop that stopped before it finished "
            "(run_until_complete returned, or the loop closed); starting it again on the running loop. "
            "Use one event loop for the application, or async_password_provider()",
        )
        self._warned = True

    def _renewed(self, task: asyncio.Task[str]) -> None:
        self._renewals.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The cache logged it (one WARNING while the token held is valid); the next call retries.
            _log.debug("background token renewal for PostgreSQL failed: %s", type(task.exception()).__name__)

    def __repr__(self) -> str:
        return f"<password_provider for {self.cache!r}>"


class _AsyncPasswordProvider:
    """A zero-argument callable returning a coroutine of the current token (see `async_password_provider`)."""

    __slots__ = ("_lifetimes", "cache")

    def __init__(self, cache: TokenCache) -> None:
        self.cache = cache
        self._lifetimes = _Lifetimes()

    def __call__(self) -> Coroutine[Any, Any, str]:
        return self._token()

    async def _token(self) -> str:
        token = await self.cache.get_token_async()
        while not self._lifetimes.lasting(token, self.cache.current, time.time()):
            await asyncio.sleep(_POLL)  # about to expire: the renewal the cache started lands meanwhile
            token = await self.cache.get_token_async()
        return token

    def __repr__(self) -> str:
        return f"<async_password_provider for {self.cache!r}>"


def password_provider(
    credential: Credential | TokenCache | None = None,
    *,
    host: str | None = None,
    scopes: str | Sequence[str] | None = None,
    **options: Unpack[CacheOptions],
) -> Callable[[], str]:
    """A zero-argument function returning a valid token: the password for Azure Database for PostgreSQL.

    ```python
    password = password_provider(host="myserver.postgres.database.azure.com")
    psycopg.connect(..., password=password())                      # psycopg
    ConnectionPool(conninfo, kwargs=lambda: {"password": password()})  # psycopg_pool >= 3.3
    cparams["password"] = password()                               # SQLAlchemy do_connect
    ```

    Call it each time a connection opens: it answers from the cache, asking the credential
    once per token lifetime (renewing in the background before expiry), and shares that
    cache with every adapter and provider built on the same credential, scope and options.
    The server checks the token only when the connection's handshakes are done, so a token
    about to expire (less than a quarter of its life left, at most 5 s) is not handed out:
    the caller waits for the renewal the cache started long before.

    - `credential`: any azure-core credential, sync or async, or a `TokenCache` to share
      (default `DefaultAzureCredential()`, created on first use).
    - `host`: the server's name, which picks its cloud's scope
      (`*.postgres.database.azure.com`, `.usgovcloudapi.net`, `.chinacloudapi.cn`); default
      the `PGHOST` environment variable, as the drivers read it; with neither, the public
      cloud's `https://ossrdbms-aad.database.windows.net/.default`. A name no rule knows
      gets the public cloud's scope with one WARNING.
    - `scopes`: the scope to use instead, whatever the host.
    - keyword options of `TokenCache` (`keep_fresh=True` keeps a token ready for
      connections that open rarely; `shared_cache`...).

    On a running event loop it never waits: it hands out the valid token held and renews
    in a task of that loop; with no valid token (or one about to expire) it raises
    `UsageError` (use `async_password_provider` there). An async credential can only renew on an event loop.
    """
    return _PasswordProvider(_cache_for(credential, host, scopes, options, "password_provider"))


def async_password_provider(
    credential: Credential | TokenCache | None = None,
    *,
    host: str | None = None,
    scopes: str | Sequence[str] | None = None,
    **options: Unpack[CacheOptions],
) -> Callable[[], Coroutine[Any, Any, str]]:
    """A coroutine function returning a valid token, for asyncpg and async pools and engines.

    ```python
    apassword = async_password_provider(host="myserver.postgres.database.azure.com")
    await asyncpg.connect(..., password=apassword)          # asyncpg awaits it per connection
    await asyncpg.create_pool(..., password=apassword)
    ```

    Takes an async credential (`azure.identity.aio`: awaited on the running loop) or a sync
    one (run in a thread): the event loop never waits for the credential. Arguments as
    `password_provider`, with which it shares its cache.
    """
    return _AsyncPasswordProvider(_cache_for(credential, host, scopes, options, "async_password_provider"))


def user_name(token: str) -> str:
    """The PostgreSQL role name of the identity `token` was issued to, read from its claims.

    Azure maps a connection's user name to a Microsoft Entra principal created in the server
    (`pgaadauth_create_principal`): a user by their user principal name, a managed identity
    by its name. Those two are in the token: `xms_mirid` (a managed identity's resource ID,
    whose last part is the user-assigned identity's name or, for a system-assigned one, its
    resource's name), else `upn`, else `preferred_username`. No second token is fetched.

    A service principal's token carries no name (its role is named as you created it) and a
    group's members connect with the group's name: then `ConfigurationError` asks you to
    pass the name yourself. `InvalidTokenError` if `token` is not a JWT. Neither message
    contains the token.
    """
    claims = _claims(token)
    resource = claims.get("xms_mirid")
    if isinstance(resource, str) and resource.rstrip("/"):
        return resource.rstrip("/").rsplit("/", 1)[-1]
    for claim in ("upn", "preferred_username"):
        name = claims.get(claim)
        if isinstance(name, str) and name:
            return name
    raise ConfigurationError(
        "the token names no user: it has no xms_mirid (managed identity), upn or preferred_username claim "
        f"(its appid is {claims.get('appid')!r}). A service principal's role is named as you created it "
        "(pgaadauth_create_principal), and a group's members connect with the group's name: pass user= yourself"
    )


def _claims(token: object) -> dict[str, Any]:
    """The payload of a JWT, undecoded signature and all (we read our own token: no check)."""
    if not isinstance(token, str):
        raise InvalidTokenError(f"user_name() takes the token as a str, got {type(token).__name__}")
    parts = token.split(".")
    payload: object = None
    if len(parts) == 3:
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            payload = None
    if not isinstance(payload, dict):
        del token, parts  # nothing of the token in this frame's locals when it raises
        raise InvalidTokenError("user_name() was given something that is not a JWT access token")
    return payload
