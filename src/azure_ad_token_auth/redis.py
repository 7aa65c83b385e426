"""Microsoft Entra ID for Azure Cache for Redis and Azure Managed Redis, through redis-py (>= 5.3).

```python
import redis
from azure_ad_token_auth.redis import credential_provider

client = redis.Redis(host="<cache>.redis.cache.windows.net", port=6380, ssl=True,
                     credential_provider=credential_provider())
```

`credential_provider()` is a redis-py `StreamingCredentialProvider`: new connections get the
cached token (user name: the token's `oid`), and before that token expires every client
built on the provider is handed the next one, with which redis-py re-authenticates its
connections (idle pooled connections at once, those in use when released, RESP3 pub/sub
connections not being read; docs/redis.md lists what redis-py cannot re-authenticate: the
`redis.asyncio` default pool, pub/sub being read). Importing this module needs redis-py;
`import azure_ad_token_auth` does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._extras import missing_extra

try:
    from redis.auth.token import TokenInterface
    from redis.credentials import StreamingCredentialProvider
except ModuleNotFoundError as error:  # redis-py missing, or older than 5.3 (no redis.auth)
    raise missing_extra(error, "redis", "azure_ad_token_auth.redis") from error

from . import _reset
from ._cache import TokenCache, fingerprint
from ._clouds import SERVICES, foreign_scope, scope_for_host, sovereign_cloud
from ._errors import ConfigurationError, InvalidTokenError, UsageError
from ._inspect import decode_claims
from ._registry import resolve_cache
from ._renewal_watch import RenewalWatch
from ._subscribers import Subscribers

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential
    from ._settings import CacheOptions
    from ._state import CachedToken

__all__ = ["RedisCredentialProvider", "credential_provider"]

_log = logging.getLogger("azure_ad_token_auth")

SERVICE = "redis"

# Every live provider, for the testing kit's reset (`_forget_all`).
_PROVIDERS: weakref.WeakSet[RedisCredentialProvider] = weakref.WeakSet()


class _Password(str):
    """The token as redis-py sends it (`AUTH <user> <token>`): a `str`, whose repr shows the
    fingerprint only. redis-py keeps the pair in its own frames' locals (`auth_args` in
    `on_connect_check_health`); a traceback rendered with its locals (`capture_locals`,
    pytest, error trackers that use `repr`) then shows the fingerprint, not the token."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<Entra ID token {fingerprint(str.__str__(self))}>"


class _EntraToken(TokenInterface):
    """What redis-py's re-authentication reads: `try_get("oid")` (the user name) and
    `get_value()` (the token). Its repr shows the fingerprint only."""

    __slots__ = ("_claims", "_entry", "_received_at", "_username")

    def __init__(self, entry: CachedToken, username: str) -> None:
        self._entry = entry
        self._username = username
        self._received_at = time.time()
        self._claims: dict[str, Any] | None = None

    def is_expired(self) -> bool:
        return time.time() >= self._entry.expires_on

    def ttl(self) -> float:
        return (self._entry.expires_on - time.time()) * 1000

    def try_get(self, key: str) -> Any:
        if key == "oid":  # the user name redis-py sends with the token: `username=` when given
            return self._username
        if self._claims is None:
            self._claims = decode_claims(self._entry.token) or {}
        return self._claims.get(key)

    def get_value(self) -> str:
        return _Password(self._entry.token)

    def get_expires_at_ms(self) -> float:
        return self._entry.expires_on * 1000

    def get_received_at_ms(self) -> float:
        return self._received_at * 1000

    def __repr__(self) -> str:
        return f"<Entra ID token {self._entry.fingerprint} for Redis user {self._username!r}>"


class RedisCredentialProvider(StreamingCredentialProvider):
    """redis-py's credential provider over a `TokenCache` (made by `credential_provider()`).

    - `get_credentials()` / `get_credentials_async()`: `(user name, token)` for a new
      connection, from the cache (the async form never blocks the event loop).
    - `on_next(callback)` / `on_error(callback)`: what redis-py registers for each client
      (and each RESP3 pub/sub connection); each new token reaches every callback, a sync
      client's in a thread, an async client's on its own event loop.
    - `close()`: stop renewing and forget the clients.
    """

    def __init__(self, cache: TokenCache, username: str | None) -> None:
        self.cache = cache
        self.username = username
        self._named: tuple[str, str] | None = None  # (token, user name) of the last token named
        self._handed_out: str | None = None  # the last token a new connection got
        self._warned_unregistered = False  # credentials asked with no client registered: one WARNING
        self._subscribers: Subscribers[_EntraToken] = Subscribers("Redis credential provider")
        self._watch = RenewalWatch(cache, self._renewed, self._expired, self._has_clients)
        _PROVIDERS.add(self)

    # -- redis-py's interface ------------------------------------------------------------

    def get_credentials(self) -> tuple[str, str]:
        if self.cache.is_async:
            raise UsageError(
                f"this Redis credential provider holds an async credential ({type(self.cache.credential).__name__}), "
                "which only redis.asyncio clients can use; give a sync redis.Redis a sync credential"
            )
        return self._hand_out(self.cache.get_token())

    async def get_credentials_async(self) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        self._subscribers.bind(loop)
        self._watch.use_loop(loop)
        return self._hand_out(await self.cache.get_token_async())

    def on_next(self, callback: Callable[[Any], Any]) -> None:
        self._subscribers.add(callback)
        if self._handed_out is not None:
            self._watch.start(self._handed_out)

    def on_error(self, callback: Callable[[Exception], Any]) -> None:
        self._subscribers.add_error(callback)

    def is_streaming(self) -> bool:
        """Whether renewals are watched: from the first credentials handed out, while a client is registered."""
        return self._watch.running

    # -- ours --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop renewing; clients built on this provider get no new token from now on."""
        self._watch.stop()
        self._subscribers.clear()

    def __repr__(self) -> str:
        return f"<RedisCredentialProvider for {self.cache!r}>"

    def _hand_out(self, token: str) -> tuple[str, str]:
        try:
            user = self._user_of(token)
        except InvalidTokenError:
            del token  # no token in this frame's locals when it is rendered with the traceback
            raise
        self._handed_out = token
        if self._has_clients():
            self._watch.start(token)
        elif not self._warned_unregistered:
            self._warned_unregistered = True
            # redis-py registers a client's re-authentication when the client (not its pool) is given
            # the provider: a pool built with it and shared by clients without it renews nothing.
            _log.warning(
                "a Redis connection asked for credentials, but no client built on this provider is registered for "
                "renewals: its connections are never re-authenticated and Azure closes them when the token expires. "
                "Give the provider to the client too: redis.Redis(connection_pool=pool, credential_provider=provider)"
            )
        return user, _Password(token)

    def _has_clients(self) -> bool:
        return len(self._subscribers) > 0

    def _user_of(self, token: str) -> str:
        if self.username is not None:
            return self.username
        if self._named is not None and self._named[0] == token:
            return self._named[1]
        oid = (decode_claims(token) or {}).get("oid")
        if not isinstance(oid, str) or not oid:
            del token  # as in `_hand_out`
            raise InvalidTokenError(
                f"the token from {type(self.cache.credential).__name__} carries no 'oid' claim, the object id Azure "
                "Redis expects as the user name: pass username=<the identity's object id> to credential_provider()"
            )
        self._named = (token, oid)
        return oid

    def _renewed(self, entry: CachedToken) -> None:
        self._subscribers.publish(_EntraToken(entry, self._user_of(entry.token)))

    def _forget(self) -> None:
        """Back to as made, its clients kept (the testing kit's reset): no token handed out, no
        renewal watched until the next new connection asks for one."""
        self._watch.forget()
        self._handed_out = self._named = None

    def _expired(self, error: Exception) -> None:
        _log.error(
            "the Redis token expired and could not be renewed (%s from %s): Azure closes the connections that "
            "authenticated with it, and new connections fail until the credential answers again",
            type(error).__name__,
            type(self.cache.credential).__name__,
        )
        self._subscribers.fail(error)


def _forget_all() -> None:
    for provider in list(_PROVIDERS):
        provider._forget()


_reset.on_reset(_forget_all, renewer=True)


def _redis_scopes(scopes: str | Sequence[str] | None, host: str | None) -> str | Sequence[str]:
    """The scopes to ask for: given ones (refusing another service's scope), else the host's cloud's.
    A shared `TokenCache` must hold these (`resolve_cache` refuses one that does not)."""
    if scopes is None:
        if host is not None and not isinstance(host, str):
            raise UsageError(
                f"host must be a string such as '<cache>.redis.cache.windows.net', got {type(host).__name__}"
            )
        name = host.strip() if host else ""
        if name.count(":") == 1:
            name = name.split(":")[0]  # `host:6380`, as a connection string has it: the port is not the cloud
        if not name:
            return SERVICES[SERVICE]
        scope = scope_for_host(name, SERVICE)
        cloud = sovereign_cloud(name) if scope is None else None
        if cloud is not None:  # the public scope there would be a guess, and a wrong audience
            raise ConfigurationError(
                f"host {host!r} is in {cloud}, but not an Azure Redis host this package knows the scope of "
                "(docs/clouds.md lists those Microsoft documents): pass scopes= with the scope your cloud's "
                "documentation gives for Redis"
            )
        return scope or SERVICES[SERVICE]
    foreign = foreign_scope(scopes, SERVICE)
    if foreign is not None:
        raise ConfigurationError(
            f"scope {foreign[0]!r} is for {foreign[1]}, not Redis: Azure Cache for Redis and Azure Managed Redis "
            f"accept {SERVICES[SERVICE]!r} (leave scopes out to get it)"
        )
    return scopes


def credential_provider(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] | None = None,
    *,
    username: str | None = None,
    host: str | None = None,
    **options: Unpack[CacheOptions],
) -> RedisCredentialProvider:
    """A redis-py credential provider for `redis.Redis` and `redis.asyncio.Redis` (`credential_provider=`).

    - `credential`: any azure-identity credential, sync or async (`None`: `DefaultAzureCredential()`),
      or a `TokenCache` to share (it must hold the scopes below: one of another service is a
      `ConfigurationError`). Providers and adapters with the same credential, scopes and
      options share one cache: one credential call per renewal for all of them.
    - `scopes`: default `https://redis.azure.com/.default` (the scope of `host`'s cloud when given).
    - `username`: the Redis user name; default the token's `oid` claim (the identity's object id).
    - `host`: the cache's host name, only to choose the scope of its cloud; a host under a
      sovereign cloud's domain that no rule knows (Azure Government) is a `ConfigurationError`
      naming `scopes=`, never given the public cloud's scope.
    - `options`: the cache's (`CacheOptions`): `refresh_margin` (300 s: Microsoft asks for a new
      token at least 3 minutes before expiry), `retry_backoff`, `timeout`, `shared_cache`, ...

    An async credential serves only `redis.asyncio` clients. A sync `DefaultAzureCredential`
    serves both: async clients await it in a thread, so their event loop never blocks.
    """
    if username is not None and not isinstance(username, str):
        raise UsageError(f"username must be a string (the identity's object id), got {type(username).__name__}")
    if username is not None and (not username or any(c.isspace() for c in username)):
        raise ConfigurationError(f"username must be a non-empty name without whitespace, got {username!r}")
    wanted = _redis_scopes(scopes, host)
    return RedisCredentialProvider(resolve_cache(credential, wanted, options, "credential_provider"), username)
