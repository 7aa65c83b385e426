"""Credential binding: how the cache asks a credential for a token, and checks the answer.

`CredentialBinding` picks the credential's method once (`get_token_info`, which carries
`refresh_on`, before `get_token`), builds the request options (claims, tenant,
CAE), creates `DefaultAzureCredential` lazily, and turns what came back into a checked
`TokenInfo` or raises `InvalidTokenError` naming the credential (never the token).
The single flight (`TokenCache`) asks only what `_binding.Binding` says, so another
binding (a cross-process store) can wrap this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import re
import time
from typing import TYPE_CHECKING, Any

from ._advice import credential_call
from ._claims import issued_at
from ._errors import ConfigurationTypeError, InvalidTokenError, UsageError
from ._timing import expiry_problem, is_number

if TYPE_CHECKING:
    from azure.core.credentials import SupportsTokenInfo, TokenCredential
    from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential

    Credential = TokenCredential | SupportsTokenInfo | AsyncTokenCredential | AsyncSupportsTokenInfo

__all__ = [
    "Credential",
    "CredentialBinding",
    "TokenInfo",
    "check_answer",
    "check_credential",
    "check_sync_credential",
    "fingerprint",
    "is_async_credential",
    "sync_credential_name",
    "validate",
]

# What may stand after "Bearer " in a header: visible ASCII, no space (RFC 6750's
# b64token is narrower still). Anything else makes the HTTP client raise an error
# whose message prints the whole header, token included.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def check_credential(credential: object) -> None:
    """Refuse what cannot be a credential, naming the fix (`ConfigurationTypeError`).

    A class rather than an instance (`DefaultAzureCredential` for `DefaultAzureCredential()`),
    a string (a scope or an API key in the credential's place), anything without
    `get_token_info()` or `get_token()`.
    """
    if isinstance(credential, type):
        name = credential.__name__
        raise ConfigurationTypeError(f"credential is the class {name}, not a credential: pass an instance: {name}()")
    if isinstance(credential, str):
        raise ConfigurationTypeError(
            "credential is a str: pass an azure-identity credential such as DefaultAzureCredential() "
            "(a scope goes in scopes=; an API key is not an Entra ID credential)"
        )
    if not callable(getattr(credential, "get_token_info", None)) and not callable(
        getattr(credential, "get_token", None)
    ):
        raise ConfigurationTypeError(
            "credential must have a get_token_info() or get_token() method, such as "
            f"azure.identity.DefaultAzureCredential(); got {type(credential).__name__}"
        )


def _token_method(credential: Any) -> Any:
    """The method a cache calls: `get_token_info` (it carries `refresh_on`), else `get_token`."""
    info = getattr(credential, "get_token_info", None)
    return info if callable(info) else credential.get_token


def is_async_credential(credential: object) -> bool:
    """Whether `credential`'s token method is a coroutine function (`azure.identity.aio`), a
    decorated one included. `check_credential` first."""
    method = _token_method(credential)
    return inspect.iscoroutinefunction(method) or inspect.iscoroutinefunction(inspect.unwrap(method))


def sync_credential_name(credential: object) -> str:
    """The sync credential to use instead of async `credential`: `azure.identity.X` for
    `azure.identity.aio.X`, the same class outside its `.aio` package for other SDKs."""
    kind = type(credential)
    head, aio, _ = kind.__module__.partition(".aio")
    if aio and head:
        return f"{head}.{kind.__name__}"
    return f"a sync counterpart of {kind.__name__} (one whose get_token is not async)"


def check_sync_credential(credential: object, caller: str, alternative: str = "") -> None:
    """Refuse an async credential where only sync code will call it, naming the sync class
    (`ConfigurationTypeError`): `azure.identity.aio.X` -> `azure.identity.X`, then `alternative`
    (what takes an async credential instead). `None` (the default credential, sync) passes."""
    if credential is None:
        return
    check_credential(credential)
    if not is_async_credential(credential):
        return
    kind = type(credential)
    head, aio, _ = kind.__module__.partition(".aio")
    given = f"{head}.aio.{kind.__name__}" if aio and head else kind.__name__
    use = sync_credential_name(credential)
    use = use if use.startswith("a sync") else f"{use}()"
    raise ConfigurationTypeError(
        f"{caller}() calls its credential from sync code, but {given} is async: use {use} instead"
        + (f" ({alternative})" if alternative else "")
    )


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log and print."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


class TokenInfo:
    """A checked answer of a credential: `token`, `expires_on`, `refresh_on` (Unix seconds).

    Its repr never shows the token.
    """

    __slots__ = ("expires_on", "refresh_on", "token")

    def __init__(self, token: str, expires_on: float, refresh_on: float | None) -> None:
        self.token = token
        self.expires_on = expires_on
        self.refresh_on = refresh_on

    def __repr__(self) -> str:
        return f"<TokenInfo expires_on={self.expires_on:.0f} refresh_on={self.refresh_on}>"

    @property
    def issued_at(self) -> float | None:
        """When the token was issued (its JWT's `iat`), for a token with a `refresh_on`:
        `_timing.refresh_on_problem` counts the lifetime from then. None otherwise."""
        return issued_at(self.token) if self.refresh_on is not None else None


class CredentialBinding:
    """One credential, bound to one set of scopes and request options (a `Binding`).

    - `fetch(claims)`: call a sync credential, return a checked `TokenInfo`.
    - `fetch_async(claims)`: the same for an async credential (awaited).
    - `rejected(token)`: a service refused `token` (a 401); nothing to do here, a hook
      for bindings that keep tokens elsewhere.

    `credential=None` means `azure.identity.DefaultAzureCredential()`, created by `bind()`
    on first use (not thread-safe: the caller serializes it).
    """

    store_hits = 0
    """No store here: every token comes from the credential."""

    def __init__(
        self,
        credential: Credential | None,
        scopes: tuple[str, ...],
        *,
        tenant_id: str | None = None,
        enable_cae: bool = False,
    ) -> None:
        self.scopes = scopes
        self.tenant_id = tenant_id
        self.enable_cae = enable_cae
        self.is_default = credential is None
        """Whether the credential is the library's own `DefaultAzureCredential()`, made with
        no arguments (so its identity follows the environment: see `_store._identity`)."""
        self.credential: Any = None
        self.is_async = False
        """Whether `fetch_async` is the method to use (the credential's method is a coroutine function)."""
        self._method: Any = None
        self._takes_options = False
        self.calls = 0
        """Calls started on the credential (`next()` on a counter is atomic: an abandoned
        call and its successor may start together)."""
        self._counter = itertools.count(1)
        if credential is not None:
            self._attach(credential)

    @property
    def bound(self) -> bool:
        """Whether the credential exists (False until `bind()` creates the default one)."""
        return self._method is not None

    def bind(self) -> None:
        """Create `DefaultAzureCredential` if no credential was given (reads files and env)."""
        if self._method is None:
            from azure.identity import DefaultAzureCredential

            self._attach(DefaultAzureCredential())

    def anew(self) -> CredentialBinding:
        """This binding as made (see `Binding.anew`); a default credential that fails to close is left as is."""
        close = getattr(self.credential, "close", None) if self.is_default else None
        if callable(close):
            with contextlib.suppress(Exception):  # dropped either way: nothing to tell anyone
                close()
        given = None if self.is_default else self.credential
        return CredentialBinding(given, self.scopes, tenant_id=self.tenant_id, enable_cae=self.enable_cae)

    @property
    def name(self) -> str:
        """`"ClassName.method()"`, for messages and logs."""
        if self._method is None:
            return "DefaultAzureCredential (lazy)"
        return f"{type(self.credential).__name__}.{'get_token_info' if self._takes_options else 'get_token'}()"

    def _attach(self, credential: Any) -> None:
        check_credential(credential)
        self._method = _token_method(credential)
        self._takes_options = callable(getattr(credential, "get_token_info", None))
        self.credential = credential
        self.is_async = is_async_credential(credential)

    def options(self, claims: str | None) -> dict[str, Any]:
        """`TokenRequestOptions` for `get_token_info`; the same names are `get_token`'s kwargs."""
        options: dict[str, Any] = {}
        if claims is not None:
            # Claims come only from a CAE challenge, and the token that answers one is a
            # CAE token: azure-identity adds the "CP1" client capability (xms_cc) to the
            # claims it sends Entra ID, and keeps the answer in its separate CAE cache,
            # only with enable_cae=True. Without it the new token would lack the
            # capability the resource checks and land in the non-CAE cache.
            options["claims"] = claims
        if claims is not None or self.enable_cae:
            options["enable_cae"] = True
        if self.tenant_id is not None:
            options["tenant_id"] = self.tenant_id
        return options

    def _call(self, claims: str | None) -> Any:
        self.calls = next(self._counter)
        if self._takes_options:
            return self._method(*self.scopes, options=self.options(claims) or None)
        return self._method(*self.scopes, **self.options(claims))

    def fetch(self, claims: str | None, *, loop: asyncio.AbstractEventLoop | None = None) -> TokenInfo:
        """Ask a sync credential for a token; `InvalidTokenError` if the answer is unusable.

        `loop`: the event loop of the async caller this call serves (the call runs in a
        worker thread). A method not declared `async def` that returns an awaitable
        anyway is awaited there, and awaited on the caller's loop from then on.
        """
        # The answer goes straight on: no local of a frame that may raise holds a token.
        with credential_call(self.credential, self.scopes):  # its error said once, with the likely fix
            return validate(self._settle(self._call(claims), loop), time.time(), self.name)

    def _settle(self, result: Any, loop: asyncio.AbstractEventLoop | None) -> Any:
        if inspect.isawaitable(result) and loop is not None:
            self.is_async = True
            return asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if callable(close):
                close()
            raise UsageError(
                f"{self.name} returned an awaitable: it is an async credential; "
                "use async_token_provider() or TokenCache.get_token_async()"
            )
        return result

    async def fetch_async(self, claims: str | None) -> TokenInfo:
        """Ask an async credential for a token (awaited on the running loop)."""
        with credential_call(self.credential, self.scopes):  # as in `fetch`
            return validate(await _awaited(self._call(claims)), time.time(), self.name)

    def rejected(self, token: str) -> None:
        """A service refused `token`: nothing is kept here, so nothing to drop."""

    def after_landing(self) -> None:
        """Nothing is left to do once a token is handed over."""


def validate(info: object, now: float, source: str) -> TokenInfo:
    """`info` (an answer with `token`, `expires_on`, `refresh_on`) as a checked `TokenInfo`.

    The one check of every token the package hands out, whether a credential returned
    it or the shared store held it (`check_answer`): `InvalidTokenError` starting with
    `source` otherwise (the message never holds the token).
    """
    checked = check_answer(info, now)
    if isinstance(checked, TokenInfo):
        return checked
    # No token (nor the object holding it) in the locals of the raising frame: error
    # trackers render them.
    del info
    raise InvalidTokenError(f"{source} {checked}")


async def _awaited(result: Any) -> Any:
    """`result`, awaited if it is awaitable (a mock or wrapper may answer either way)."""
    return await result if inspect.isawaitable(result) else result


def check_answer(info: object, now: float) -> TokenInfo | str:
    """`info` (a credential's answer, or anything with `token` / `expires_on` /
    `refresh_on`) as a `TokenInfo`, or what makes it unusable (text without the token).

    Each attribute is read once, and only through the built-in types' own code: a `str`
    subclass becomes an exact `str` copy (`str.__str__`), an int or float subclass an
    exact float, so none of the answer's own methods (`__bool__`, `__len__`, `__eq__`,
    `encode`, `__float__`...) ever runs, here or later.
    """
    if info is None:
        return "returned None instead of an access token"
    raw_token = _read(info, "token")
    token, token_type = _exact_str(raw_token), _type_name(raw_token)
    del raw_token  # only the exact copy from here on
    if token is None or not token:
        kind = "empty" if token == "" else "of type " + token_type
        return f"returned a {_type_name(info)} whose token is {kind}, not a non-empty string"
    if not _HEADER_SAFE.fullmatch(token):
        return f"returned a token containing {_unsafe_kind(token)}, which cannot go in an HTTP header"
    raw_expiry = _read(info, "expires_on")
    expires_on = _exact_number(raw_expiry)
    if expires_on is None:
        return f"returned expires_on of type {_type_name(raw_expiry)}; expected seconds since the epoch (int)"
    problem = expiry_problem(expires_on, now)
    if problem is not None:
        return problem
    refresh_on = _exact_number(_read(info, "refresh_on"))
    return TokenInfo(token, expires_on, refresh_on if is_number(refresh_on) else None)


_UNREADABLE = object()


def _read(info: object, name: str) -> object:
    """`info.name`, or a marker when reading it raises (its message may hold anything)."""
    try:
        return getattr(info, name, None)
    except Exception:  # noqa: BLE001 - an attribute that raises is an unusable answer
        return _UNREADABLE


def _type_name(value: object) -> str:
    return "unreadable attribute" if value is _UNREADABLE else type(value).__name__


def _exact_str(value: object) -> str | None:
    """An exact `str` copy of a `str` (subclass included), else None; runs none of its methods."""
    # `type()` and `issubclass` on it, not `isinstance`: that would trust `__class__`.
    return str.__str__(value) if issubclass(type(value), str) else None


def _exact_number(value: object) -> float | None:
    """An exact float of an int or float (subclasses included, not bool), else None."""
    kind = type(value)
    try:
        if issubclass(kind, float):
            return float.__float__(value)  # type: ignore[arg-type]
        if issubclass(kind, int) and kind is not bool:
            return float(int.__int__(value))  # type: ignore[arg-type]
    except OverflowError:
        return float("inf")  # refused as not finite
    return None


def _unsafe_kind(token: str) -> str:
    if "\r" in token or "\n" in token:
        return "a line break (CR/LF; read from a file with its trailing newline?)"
    if " " in token or "\t" in token:
        return "whitespace"
    return "a control or non-ASCII character"
