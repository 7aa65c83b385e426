"""The binding the cache uses: a credential binding that shares its tokens through a store.

`SharedBinding` wraps a cache's `CredentialBinding` and is a `Binding` itself (what the
cache asks: `fetch(claims)` / `fetch_async(claims)` / `rejected(token)` and the
credential's face), so the single flight and the per-request path stay in-process: the
store is touched once per renewal.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _timing
from .._binding import Binding
from .._claims import identity_claims
from .._credential import CredentialBinding, TokenInfo, fingerprint
from .._forks import reset_in_child
from .._settings import CacheSettings
from . import _lock
from ._directory import StoreFault
from ._identity import DefaultIdentity, StoreKey
from ._records import CorruptRecordFault, LockBusyFault, TokenStore
from ._settings import shared_cache_setting
from ._sweep import Sweeper

__all__ = ["FAULT_BACKOFF", "SharedBinding", "lock_wait", "share"]

_log = logging.getLogger("azure_ad_token_auth")

# A stored token with less than this left is not handed out: it could expire on the way.
_MIN_REMAINING = 1.0
FAULT_BACKOFF = 60.0
"""After a fault (permissions, a corrupt or foreign store), how long a cache keeps to its
own token before it tries the store again."""

_UNSEEN = object()  # no token from this process's own credential yet
_STORES: dict[Path, Sweeper] = {}  # a store, through its clean-up (`Sweeper.store`), per directory
_platform_warned = False


def _stores_after_fork() -> None:
    for sweeper in _STORES.values():
        sweeper.store.after_fork()
        sweeper.after_fork()


reset_in_child(_stores_after_fork)


class SharedBinding:
    """A credential binding that shares its tokens through a `TokenStore`.

    `key()` is asked at every renewal (the default credential's changes when someone signs
    in to a developer tool as another account). `fetch(claims)`: lock across processes,
    take a token some other process renewed since this one last looked (valid, not
    rejected, made for this key, issued to the identity this process's own tokens name),
    or else call the inner binding and store what it returns; unlock. A lock held longer
    than `lock_wait` makes this renewal alone call the credential. A fault (the store
    cannot be trusted or used) warns once and sends the cache to its own token for
    `FAULT_BACKOFF` seconds. A stored token issued to another identity
    (`_claims.identity_claims`: tenant, object, app) means two identities share this key:
    this cache stops sharing, with one WARNING, and never writes its token there for the
    others to take.
    """

    def __init__(
        self, inner: CredentialBinding, sweeper: Sweeper, key: Callable[[], StoreKey], settings: CacheSettings
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.sweeper = sweeper
        self.store = sweeper.store
        self._make_key = key  # asked at each renewal: who is signed in may have changed
        self._key: StoreKey | None = None  # the last renewal's
        self.lock_wait = lock_wait(settings.timeout)
        self._last: str | None = None  # fingerprint of the token this process last got
        self._fault: str | None = None
        self._retry_at = 0.0  # monotonic
        self._unshared: str | None = None  # why this cache no longer shares
        # The identity claims of the tokens this process's own credential returned, once it has.
        self._claims: object = _UNSEEN
        self._warned: set[str] = set()
        self._tidy_due = False  # a token was stored: the clean-up runs once it is handed over
        self.store_hits = 0
        """Fetches answered from the store without a credential call (serialized by its lock)."""

    def __repr__(self) -> str:
        state = f"off: {self._unshared or self._fault}" if self._unshared or self._fault else "on"
        return f"<SharedBinding {self.store.directory} {state}>"

    # -- the inner binding's face, for the cache ---------------------------------------

    @property
    def credential(self) -> Any:
        return self.inner.credential

    @property
    def calls(self) -> int:
        return self.inner.calls

    @property
    def bound(self) -> bool:
        return self.inner.bound

    def bind(self) -> None:
        self.inner.bind()

    def anew(self) -> Binding:
        return share(self.inner.anew(), self.settings)  # the store's identity read again, too

    @property
    def is_async(self) -> bool:
        return self.inner.is_async

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def active(self) -> bool:
        """False while this cache keeps to its own token (a fault, or an unreadable identity)."""
        return self._usable_key() is not None

    def _usable_key(self) -> StoreKey | None:
        """The store key now, or None while the store is not to be used."""
        if self._unshared is not None:
            return None
        if self._fault is not None:
            if _timing.monotonic() < self._retry_at:
                return None
            self._fault = None
            self.store.reopen()  # check the whole path again
        try:
            key = self._make_key()
        except StoreFault as exc:  # no salt for the default credential's key
            self._not_now(exc)
            return None
        if self._key is not None and key.digest != self._key.digest:
            # Someone signed in to a developer tool as another account: this process's
            # credential answers for it now, so what its earlier tokens said is no rule.
            self._claims, self._last = _UNSEEN, None
            _log.debug("shared token cache: the default credential's sign-in changed; a new store key")
        self._key = key
        return key

    def fetch(self, claims: str | None, *, loop: asyncio.AbstractEventLoop | None = None) -> TokenInfo:
        key = self._usable_key()
        fd = None
        if key is not None:
            try:
                steps = self.store.lock_steps(key, self.lock_wait)
                try:
                    while True:
                        time.sleep(next(steps))
                except StopIteration as done:
                    fd = done.value
            except (StoreFault, LockBusyFault) as exc:
                self._not_now(exc)
        if fd is None:
            return self._own(self.inner.fetch(claims, loop=loop))
        try:
            stored = self._take(key, claims)
            if stored is not None:
                return stored
            info = self._own(self.inner.fetch(claims, loop=loop))
            kept = self._keep(key, info, claims)
        finally:
            _lock.release(fd)
        self._tidy_due = self._tidy_due or kept
        return info

    async def fetch_async(self, claims: str | None) -> TokenInfo:
        key = self._usable_key()
        fd = None
        if key is not None:
            try:
                steps = self.store.lock_steps(key, self.lock_wait)
                try:
                    while True:
                        await asyncio.sleep(next(steps))
                except StopIteration as done:
                    fd = done.value
            except (StoreFault, LockBusyFault) as exc:
                self._not_now(exc)
        if fd is None:
            return self._own(await self.inner.fetch_async(claims))
        try:
            stored = self._take(key, claims)
            if stored is not None:
                return stored
            info = self._own(await self.inner.fetch_async(claims))
            kept = self._keep(key, info, claims)
        finally:
            _lock.release(fd)
        self._tidy_due = self._tidy_due or kept
        return info

    def rejected(self, token: str) -> None:
        self.inner.rejected(token)
        key = self._key  # the key `token` was had under, not one read now
        if key is not None and self._unshared is None and self._fault is None:
            try:
                self.store.mark_rejected(key, token)
            except StoreFault as exc:
                self._not_now(exc)

    def after_landing(self) -> Callable[[], None] | None:
        """The clean-up after a renewal that stored its token, once that token has reached
        everyone waiting for it (the cache runs it off any event loop: it reads the directory)."""
        if not self._tidy_due:
            return None
        self._tidy_due = False
        return self._tidy

    def _own(self, info: TokenInfo) -> TokenInfo:
        """A token this process's own credential returned: whose identity the stored ones must name."""
        self._claims = identity_claims(info.token)
        return info

    # -- under the lock --------------------------------------------------------------

    def _take(self, key: StoreKey | None, claims: str | None) -> TokenInfo | None:
        """A stored token to use instead of calling the credential, or None."""
        if key is None or claims is not None:
            return None  # a claims challenge needs a token the credential makes for it
        now = time.time()
        try:
            info = self.store.read(key, now)
            if info is None:
                return None
            taken = fingerprint(info.token)
            if (
                taken == self._last  # nobody renewed it since: this process renews
                or info.expires_on - now <= _MIN_REMAINING
                or (info.refresh_on is not None and info.refresh_on <= now)
                or self.store.is_rejected(key, info.token)
            ):
                return None
            if self._claims is not _UNSEEN and identity_claims(info.token) != self._claims:
                self._unshared = "it holds a token issued to another identity than this process's credential's"
                self._warn(
                    "identity",
                    f"shared token cache off for this cache: the record for its key in {self.store.directory} "
                    "holds a token issued to another identity (tenant, object or application id differ from "
                    "this process's own tokens): processes of two identities share that key; give each "
                    "identity its own shared_cache_identity=. Using this process's own token cache",
                )
                return None
        except StoreFault as exc:
            self._not_now(exc)
            return None
        except CorruptRecordFault as exc:
            # This process's fresh token replaces it; a foreign record is never served.
            self._warn(
                "corrupt",
                f"shared token cache: the record for this cache in {self.store.directory} "
                f"is corrupt ({exc}); replacing it with a fresh token",
            )
            return None
        self._last = taken
        self.store_hits += 1
        _log.debug("token %s taken from the shared store %s", taken, self.store.directory)
        return info

    def _keep(self, key: StoreKey | None, info: TokenInfo, claims: str | None) -> bool:
        """Store what the credential returned (checked by the inner binding); whether it
        was. A token answering a claims challenge is not stored: it answers that challenge."""
        self._last = fingerprint(info.token)
        if key is None or claims is not None or self._fault is not None or self._unshared is not None:
            return False  # unshared: the others of this key must not take this identity's token
        if info.refresh_on is not None and _timing.refresh_on_problem(
            info.refresh_on, info.expires_on, time.time(), info.issued_at
        ):
            # One that cannot be right (the cache warned): stored, it would make every other
            # process find the token due and call its own credential.
            info = TokenInfo(info.token, info.expires_on, None)
        try:
            self.store.write(key, info)
        except StoreFault as exc:
            self._not_now(exc)
            return False
        return True

    def _tidy(self) -> None:
        """The store's clean-up (`_sweep`), a bounded step of it after each stored token."""
        try:
            self.sweeper.sweep(time.time())
        except (OSError, StoreFault) as exc:
            _log.debug("shared token cache: tidying %s failed: %s", self.store.directory, exc)

    def _not_now(self, problem: Exception) -> None:
        """A lock held too long: this renewal alone goes without the store. A fault: the
        store is off for `FAULT_BACKOFF` seconds."""
        if isinstance(problem, LockBusyFault):
            _log.info("shared token cache: %s; this renewal calls the credential itself", problem)
            return
        self._fault = str(problem)
        self._retry_at = _timing.monotonic() + FAULT_BACKOFF
        self._warn(
            f"fault:{problem}",
            f"shared token cache off for this cache: {problem}; using this process's own token cache "
            f"(trying the store again in {FAULT_BACKOFF:g} s)",
        )

    def _warn(self, kind: str, message: str) -> None:
        if kind in self._warned:
            _log.debug("%s", message)
            return
        self._warned.add(kind)
        _log.warning("%s", message)


def share(inner: CredentialBinding, settings: CacheSettings) -> Binding:
    """`inner` sharing its tokens through the store `settings.shared_cache` names;
    `inner` itself when it names none, or with one WARNING on a platform without the
    tested lock (Windows) and for a credential the caller passed without naming its
    identity (`shared_cache_identity=`): only the library's own default credential
    shares without a name (see `_identity`)."""
    global _platform_warned
    directory = shared_cache_setting(settings.shared_cache)
    if directory is None:
        return inner
    if not _lock.AVAILABLE or sys.platform == "win32":
        if not _platform_warned:
            _platform_warned = True
            _log.warning(
                "shared token cache is not supported on %s (its file locking is untested there); "
                "each process keeps its own token cache",
                sys.platform,
            )
        return inner

    identity = settings.shared_cache_identity
    if identity is None and not inner.is_default:
        _log.warning(
            "shared token cache off for this cache: a %s was passed, and only the default credential the "
            "library makes itself (credential=None) shares without a name; give shared_cache_identity= a "
            "name for the identity it answers for to share its tokens. Using this process's own token cache",
            type(inner.credential).__name__,
        )
        return inner

    sweeper = _STORES.get(directory)
    if sweeper is None:
        sweeper = _STORES.setdefault(directory, Sweeper(TokenStore(directory)))
    default = DefaultIdentity()
    named = None if identity is None else StoreKey(inner.scopes, inner.tenant_id, inner.enable_cae, identity)

    def key() -> StoreKey:  # at each renewal; `StoreFault` when the store's salt cannot be had
        if named is not None:
            return named
        return StoreKey(inner.scopes, inner.tenant_id, inner.enable_cae, default.parts(sweeper.store.salt()))

    return SharedBinding(inner, sweeper, key, settings)


def lock_wait(timeout: float) -> float:
    """How long a renewal waits for another process's: well inside the cache's `timeout`,
    so a wedged holder costs this process a call of its own, never a failed request."""
    return min(15.0, timeout / 4)
