"""The cross-process token store behind `shared_cache`.

Processes on one host that use one identity for one set of scopes share one token:
the process whose token is due takes an OS file lock, reads the store, and calls its
credential only when nobody has renewed the token since it last looked; the others
find the renewed token there. `SharedBinding` wraps a cache's credential binding
(`fetch(claims)` / `fetch_async(claims)` / `rejected(token)`), so the single flight
and the per-request path stay in-process: the store is touched once per renewal.

The store is a per-user directory (mode 0700) of one JSON record per key (mode 0600,
replaced atomically), a lock file per key, and a marker file per rejected token. Any
fault (corrupt, unreadable or read-only store, a lock held too long) makes that cache
fall back to its per-process token with one WARNING: no request fails because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

from ._credential import CredentialBinding, TokenInfo, fingerprint
from ._timing import is_number

__all__ = ["ENV_VAR", "SharedBinding", "StoreKey", "TokenStore", "default_directory", "shared_cache_setting"]

ENV_VAR = "AZURE_AD_TOKEN_AUTH_SHARED_CACHE"

_log = logging.getLogger("azure_ad_token_auth")

_FORMAT = 1
# A token as the credential binding accepts it (visible ASCII, no space): a record
# holding anything else is treated as corrupt, never handed to an HTTP client.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
# A stored token with less than this left is not handed out: it could expire on the way.
_MIN_REMAINING = 1.0
# Lock polling: quick at first (the holder usually only reads), then every 50 ms.
_POLL_FIRST, _POLL_MAX = 0.002, 0.05
# Environment variables that choose which identity azure-identity's credentials use.
_IDENTITY_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CONFIG_DIR",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_RES_ID",
)
_IDENTITY_ATTRS = (
    "client_id",
    "_client_id",
    "tenant_id",
    "_tenant_id",
    "managed_identity_client_id",
    "_username",
    "_authority",
)
# Where azure-identity keeps the rest: a managed identity's client / object / resource id
# in `_settings` or `_config`; a client assertion credential's (workload identity's)
# client id and tenant in its `_client`; AzurePipelinesCredential's in the assertion
# credential it wraps; an interactive credential's signed-in user in its `_auth_record`.
_IDENTITY_DICTS = ("_settings", "_config")
# The user a delegated credential acts for: OnBehalfOfCredential's user assertion,
# AuthorizationCodeCredential's code. Secrets, so only their hash goes in the key.
_USER_ATTRS = ("_assertion", "_authorization_code")
_INNER = ("_credential", "_client", "_client_assertion_credential", "_auth_record")


class StoreFault(Exception):
    """The store cannot be used; the message says why (never a token)."""


def shared_cache_setting(value: bool | str | os.PathLike[str] | None) -> Path | None:
    """The store directory the `shared_cache` option asks for, or None for no store.

    `None` defers to the `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` environment variable: unset,
    empty, `0`, `false`, `no` or `off` mean no store; `1`, `true`, `yes` or `on` the
    per-user default directory; anything else is a directory path.
    """
    if value is None:
        raw = os.environ.get(ENV_VAR, "").strip()
        if raw.lower() in ("", "0", "false", "no", "off"):
            return None
        value = True if raw.lower() in ("1", "true", "yes", "on") else raw
    if value is False:
        return None
    if value is True:
        return default_directory()
    if isinstance(value, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(value)))
        if not os.fspath(value):
            raise ValueError("shared_cache must be True, False, None or a directory path, got ''")
        return path.absolute()
    raise TypeError(f"shared_cache must be True, False, None or a directory path, got {type(value).__name__}")


def default_directory() -> Path:
    """The per-user store directory: under `XDG_RUNTIME_DIR` (a per-user tmpfs) where set."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or tempfile.gettempdir()
        return Path(base) / "azure-ad-token-auth"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "azure-ad-token-auth"
    return Path(tempfile.gettempdir()) / f"azure-ad-token-auth-{os.geteuid()}"


class StoreKey:
    """What makes two caches' tokens interchangeable; hashed into the file names."""

    def __init__(
        self,
        credential: Any,
        scopes: Sequence[str],
        tenant_id: str | None,
        enable_cae: bool,
        identity: str | None = None,
    ) -> None:
        parts: dict[str, Any] = {
            "scopes": sorted(scopes),
            "tenant_id": tenant_id,
            "cae": bool(enable_cae),
        }
        if identity is not None:
            parts["identity"] = identity
        else:
            parts["credential"] = _describe_identity(credential)
        self.parts = parts
        self.digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _describe_identity(credential: Any, depth: int = 0) -> dict[str, Any]:
    """Class and known identity attributes of a credential, its wrapped ones, and for
    azure-identity classes the environment that selects the identity."""
    cls = type(credential)
    described: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    for name in _IDENTITY_ATTRS:
        value = getattr(credential, name, None)
        if isinstance(value, str):
            described[name.lstrip("_")] = value
    for name in _IDENTITY_DICTS:
        value = getattr(credential, name, None)
        if isinstance(value, dict):
            described[name.lstrip("_")] = _plain(value)
    for name in _USER_ATTRS:
        value = getattr(credential, name, None)
        if isinstance(value, str):
            described[name.lstrip("_")] = hashlib.sha256(value.encode()).hexdigest()
    if depth < 3:
        inner = [*(getattr(credential, n, None) for n in _INNER), *(getattr(credential, "credentials", None) or ())]
        nested = [_describe_identity(c, depth + 1) for c in inner if c is not None]
        if nested:
            described["inner"] = nested
    if depth == 0 and cls.__module__.startswith("azure.identity"):
        described["env"] = {name: os.environ[name] for name in _IDENTITY_ENV if name in os.environ}
    return described


def _plain(settings: dict[Any, Any]) -> dict[str, Any]:
    """The strings (and dicts of them) in `settings`: the same in every process."""
    return {
        str(k): _plain(v) if isinstance(v, dict) else v
        for k, v in settings.items()
        if isinstance(v, (str, dict)) or v is None
    }


class _Record:
    __slots__ = ("expires_on", "refresh_on", "token")

    def __init__(self, token: str, expires_on: float, refresh_on: float | None) -> None:
        self.token = token
        self.expires_on = expires_on
        self.refresh_on = refresh_on


class TokenStore:
    """One store directory: records, locks and rejection markers, one set per key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._checked = False

    def __repr__(self) -> str:
        return f"<TokenStore {self.directory}>"

    def _paths(self, key: StoreKey) -> tuple[Path, Path]:
        return self.directory / f"{key.digest}.json", self.directory / f"{key.digest}.lock"

    def prepare(self) -> None:
        """Create the directory (0700) or check that an existing one is this user's alone."""
        if self._checked:
            return
        path = self.directory
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(path)
        except OSError as exc:
            raise StoreFault(f"cannot create {path}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise StoreFault(f"{path} is not a directory (a symbolic link or a file)")
        if sys.platform != "win32":
            if info.st_uid != os.geteuid():
                raise StoreFault(f"{path} belongs to user id {info.st_uid}, not this user ({os.geteuid()})")
            if info.st_mode & 0o077:
                raise StoreFault(f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); chmod 700 it")
        self._checked = True

    # -- the lock --------------------------------------------------------------------

    def lock_steps(self, key: StoreKey, wait: float) -> Generator[float, None, int]:
        """Take the key's lock: yields how long to sleep between tries, returns the
        locked file descriptor (closing it releases the lock). The OS drops the lock
        when its holder dies, so a killed worker cannot wedge the others."""
        self.prepare()
        _, lock_path = self._paths(key)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreFault(f"cannot open the lock {lock_path}: {exc.strerror}") from None
        deadline = time.monotonic() + wait
        delay = _POLL_FIRST
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise StoreFault(f"another process has held {lock_path} for more than {wait:g} s")
                yield delay
                delay = min(delay * 2, _POLL_MAX)
        except BaseException:
            os.close(fd)
            raise
        with _HELD_LOCK:
            _HELD.add(fd)
        return fd

    # -- records ---------------------------------------------------------------------

    def read(self, key: StoreKey) -> _Record | None:
        """The stored record, or None when there is none. Raises `StoreFault` when the
        file cannot be trusted or read, and `ValueError` when it is corrupt."""
        path, _ = self._paths(key)
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreFault(f"cannot read {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise StoreFault(f"{path} is not a regular file")
            if sys.platform != "win32" and (info.st_uid != os.geteuid() or info.st_mode & 0o077):
                raise StoreFault(
                    f"{path} is not this user's alone (owner {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})"
                )
            try:
                data = handle.read(65536)
            except OSError as exc:
                raise StoreFault(f"cannot read {path}: {exc.strerror}") from None
        try:
            value = json.loads(data)
        except RecursionError:  # nested too deep: corrupt like any other garbage
            raise ValueError("not a token record") from None
        token, expires_on, refresh_on = value["token"], value["expires_on"], value.get("refresh_on")
        if value.get("format") != _FORMAT or not isinstance(token, str) or not _HEADER_SAFE.fullmatch(token):
            raise ValueError("not a token record")
        # The checks the credential binding makes of a credential's answer (finite, not bool).
        if not is_number(expires_on) or not (refresh_on is None or is_number(refresh_on)):
            raise ValueError("not a token record")
        return _Record(token, expires_on, refresh_on)

    def write(self, key: StoreKey, record: _Record) -> None:
        """Replace the key's record atomically (a reader sees the old one or the new one)."""
        path, _ = self._paths(key)
        payload = {
            "format": _FORMAT,
            "token": record.token,
            "expires_on": record.expires_on,
            "refresh_on": record.refresh_on,
        }
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{key.digest}.", dir=self.directory)  # mode 0600
        except OSError as exc:
            raise StoreFault(f"cannot write in {self.directory}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle)
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise StoreFault(f"cannot write {path}: {exc.strerror}") from None
        self._drop_markers(key, keep=fingerprint(record.token))

    # -- rejections ------------------------------------------------------------------

    def _marker(self, key: StoreKey, fingerprint: str) -> Path:
        return self.directory / f"{key.digest}.{fingerprint}.rejected"

    def mark_rejected(self, key: StoreKey, token: str) -> None:
        """Record that a service refused `token`; needs no lock (creating a file is atomic)."""
        self.prepare()
        try:
            os.close(os.open(self._marker(key, fingerprint(token)), os.O_WRONLY | os.O_CREAT | _NOFOLLOW, 0o600))
        except OSError as exc:
            raise StoreFault(f"cannot write in {self.directory}: {exc.strerror}") from None

    def is_rejected(self, key: StoreKey, token: str) -> bool:
        return os.path.lexists(self._marker(key, fingerprint(token)))

    def _drop_markers(self, key: StoreKey, keep: str) -> None:
        for marker in _glob(self.directory, f"{key.digest}.", ".rejected"):
            if marker.name != f"{key.digest}.{keep}.rejected":
                with contextlib.suppress(OSError):
                    marker.unlink()


def _glob(directory: Path, prefix: str, suffix: str) -> Iterable[Path]:
    try:
        names = os.listdir(directory)
    except OSError:
        return ()
    return [directory / name for name in names if name.startswith(prefix) and name.endswith(suffix)]


def release(fd: int) -> None:
    """Release a lock `TokenStore.lock_steps` took."""
    with _HELD_LOCK:
        _HELD.discard(fd)
    # Unlock before closing: a child forked while this thread was still waiting for the
    # lock holds a copy of the same open file, and closing ours alone would leave the
    # lock held for as long as that child lives.
    with contextlib.suppress(OSError):
        _unlock(fd)
    os.close(fd)


# Lock files held now. A child forked meanwhile shares their open file (and so the
# lock) but not the thread that would close it: it closes its copies at once.
_HELD: set[int] = set()
_HELD_LOCK = threading.Lock()


def _close_held_in_child() -> None:
    global _HELD_LOCK
    _HELD_LOCK = threading.Lock()
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        # flock, not lockf: flock locks belong to the open file, so two caches in one
        # process exclude each other too, and the kernel drops them when the holder dies.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise StoreFault(f"cannot lock: {exc.strerror}") from None
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _token_info(record: _Record) -> TokenInfo:
    return TokenInfo(record.token, float(record.expires_on), record.refresh_on)


class SharedBinding:
    """A credential binding that shares its tokens through a `TokenStore`.

    `fetch(claims)`: lock across processes, take a token some other process renewed
    since this one last looked (valid, not rejected), or else call the inner binding
    and store what it returns; unlock. `rejected(token)` marks the token in the store
    so no process takes it from there again. After a fault the binding warns once and
    calls the inner binding directly from then on.
    """

    def __init__(
        self, inner: CredentialBinding, store: TokenStore, key: StoreKey | Callable[[], StoreKey], lock_wait: float
    ) -> None:
        self.inner = inner
        self.store = store
        self._key = key
        self.lock_wait = lock_wait
        self._last: str | None = None  # fingerprint of the token this process last got
        self._fault: str | None = None
        self._warned: set[str] = set()
        self.store_hits = 0
        """Fetches answered from the store without a credential call (serialized by its lock)."""

    def __repr__(self) -> str:
        state = f"off: {self._fault}" if self._fault else "on"
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

    @property
    def is_async(self) -> bool:
        return self.inner.is_async

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def key(self) -> StoreKey:
        """The store key, worked out on first use (the credential may be created lazily)."""
        if not isinstance(self._key, StoreKey):
            self._key = self._key()
        return self._key

    @property
    def active(self) -> bool:
        """False once a fault has sent this cache back to its per-process token."""
        return self._fault is None

    def fetch(self, claims: str | None, *, loop: asyncio.AbstractEventLoop | None = None) -> TokenInfo:
        if self._fault is not None:
            return self.inner.fetch(claims, loop=loop)
        try:
            steps = self.store.lock_steps(self.key, self.lock_wait)
            try:
                while True:
                    time.sleep(next(steps))
            except StopIteration as done:
                fd: int = done.value
        except StoreFault as exc:
            self._fall_back(exc)
            return self.inner.fetch(claims, loop=loop)
        try:
            stored = self._take(claims)
            if stored is not None:
                self.store_hits += 1
                return stored
            info = self.inner.fetch(claims, loop=loop)
            self._keep(info)
            return info
        finally:
            release(fd)

    async def fetch_async(self, claims: str | None) -> TokenInfo:
        if self._fault is not None:
            return await self.inner.fetch_async(claims)
        try:
            steps = self.store.lock_steps(self.key, self.lock_wait)
            try:
                while True:
                    await asyncio.sleep(next(steps))
            except StopIteration as done:
                fd: int = done.value
        except StoreFault as exc:
            self._fall_back(exc)
            return await self.inner.fetch_async(claims)
        try:
            stored = self._take(claims)
            if stored is not None:
                self.store_hits += 1
                return stored
            info = await self.inner.fetch_async(claims)
            self._keep(info)
            return info
        finally:
            release(fd)

    def rejected(self, token: str) -> None:
        self.inner.rejected(token)
        if self._fault is None:
            try:
                self.store.mark_rejected(self.key, token)
            except StoreFault as exc:
                self._fall_back(exc)

    # -- under the lock --------------------------------------------------------------

    def _take(self, claims: str | None) -> TokenInfo | None:
        """A stored token to use instead of calling the credential, or None."""
        if claims is not None:
            return None  # a claims challenge needs a token the credential makes for it
        try:
            record = self.store.read(self.key)
            if record is None:
                return None
            taken = fingerprint(record.token)
            now = time.time()
            if (
                taken == self._last  # nobody renewed it since: this process renews
                or record.expires_on - now <= _MIN_REMAINING
                or (record.refresh_on is not None and record.refresh_on <= now)
                or self.store.is_rejected(self.key, record.token)
            ):
                return None
            info = _token_info(record)
        except StoreFault as exc:
            self._fall_back(exc)
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            # Corrupt: this process's fresh token will replace it.
            self._warn_once("corrupt", f"the store record for this cache in {self.store.directory} is corrupt")
            return None
        self._last = taken
        _log.debug("token %s taken from the shared store %s", taken, self.store.directory)
        return info

    def _keep(self, info: TokenInfo) -> None:
        """Store what the credential returned (checked by the inner binding)."""
        self._last = fingerprint(info.token)
        if self._fault is not None:
            return
        try:
            self.store.write(self.key, _Record(info.token, info.expires_on, info.refresh_on))
        except StoreFault as exc:
            self._fall_back(exc)

    def _fall_back(self, fault: StoreFault) -> None:
        self._fault = str(fault)
        self._warn_once("fault", f"{fault}")

    def _warn_once(self, kind: str, reason: str) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        if kind == "corrupt":
            _log.warning("shared token cache: %s; replacing it with a fresh token", reason)
        else:
            _log.warning("shared token cache off for this cache: %s; using this process's own token cache", reason)


def share(inner: CredentialBinding, directory: Path, identity: str | None, timeout: float) -> SharedBinding:
    """`inner` sharing its tokens through the store in `directory`."""

    def key() -> StoreKey:
        return StoreKey(inner.credential, inner.scopes, inner.tenant_id, inner.enable_cae, identity)

    return SharedBinding(inner, TokenStore(directory), key, lock_wait(timeout))


def lock_wait(timeout: float) -> float:
    """How long a renewal waits for another process's: well inside the cache's `timeout`,
    so a wedged holder costs this process a call of its own, never a failed request."""
    return min(15.0, timeout / 4)
