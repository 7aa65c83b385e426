"""`install_openai_session`: Azure AD tokens for openai's module-level API in one call."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from ._cache import TokenCache
from ._errors import InsecureTransportError
from ._registry import DEFAULT_SCOPE
from ._requests import AzureADTokenAuth

if TYPE_CHECKING:
    from ._credential import Credential

__all__ = ["install_openai_session", "openai_major_version", "uninstall_openai_session"]

# openai 0.28 refuses to send a request without an api_key, even when the session's
# auth supplies the Authorization header (which is what goes on the wire).
PLACEHOLDER_API_KEY = "azure-ad-token-auth"

_MISSING = object()
_OPENAI_MISSING_KEY = "<missing API key>"
_installed: dict[int, tuple[ModuleType, dict[str, Any], dict[str, Any]]] = {}
_lock = threading.Lock()


def openai_major_version(openai: ModuleType) -> int:
    """The installed openai's major version, read from the package itself."""
    version = getattr(openai, "__version__", None) or getattr(getattr(openai, "version", None), "VERSION", None)
    if not isinstance(version, str) or not version.split(".")[0].isdigit():
        raise RuntimeError(f"cannot tell the version of the openai module {openai!r}")
    return int(version.split(".")[0])


class _SessionFactory:
    """openai 0.28 calls this once per thread, and again every 180 s per thread."""

    def __init__(self, auth: AzureADTokenAuth) -> None:
        self.auth = auth

    def __call__(self) -> requests.Session:
        session = requests.Session()
        session.auth = self.auth
        return session

    def __repr__(self) -> str:
        return f"<openai session factory for {self.auth!r}>"


class _ModuleClientProvider:
    """openai >= 1's module client calls this on every request, without the URL.

    The https rule and `allowed_hosts` are applied to the module client's base URL (from
    `openai.azure_endpoint`, or `openai.base_url` when set) before a token is handed over.
    """

    def __init__(self, openai: ModuleType, auth: AzureADTokenAuth) -> None:
        self._openai = openai
        self._auth = auth

    def __call__(self) -> str:
        # Where the request really goes: the built client's base URL (openai builds it
        # before asking for a token; a later `openai.base_url` wins over the endpoint).
        client = getattr(self._openai, "_client", None)
        target = getattr(client, "base_url", None) if client is not None else None
        endpoint = str(target or getattr(self._openai, "base_url", None) or getattr(self._openai, "azure_endpoint", ""))
        auth = self._auth
        if not (auth._https_fast_path and endpoint.startswith("https://")) and not auth._policy.allows_url(endpoint):
            raise InsecureTransportError(
                f"refusing to send an Azure AD token to {urlsplit(endpoint).hostname!r}: not in allowed_hosts"
            )
        return auth.cache.get_token()

    def __repr__(self) -> str:
        return f"<openai module-client token provider for {self._auth!r}>"


def _forget_thread_sessions(openai: ModuleType) -> None:
    # openai 0.28 keeps one session per thread (`api_requestor._thread_context`) and
    # threads that already made a request would keep theirs, with the old auth, for up
    # to 180 s. A fresh thread-local whose every thread starts with a session from the
    # current factory fixes that for all threads; replacing it whole, rather than
    # deleting attributes, never leaves a request in flight without its session.
    requestor = getattr(openai, "api_requestor", None)
    if requestor is None or not hasattr(requestor, "_thread_context") or not hasattr(requestor, "_make_session"):
        return
    make_session: Callable[[], requests.Session] = requestor._make_session

    class _Sessions(threading.local):
        def __init__(self) -> None:
            self.session = make_session()
            self.session_create_time = time.time()

    requestor._thread_context = _Sessions()


def openai0_settings(openai: ModuleType) -> dict[str, Any]:
    """What openai 0.28 needs to send a request whose `Authorization` header is ours.

    `api_type="azure_ad"` (unless already `"azure"` or `"azure_ad"`) and a placeholder
    `api_key` when none is set: 0.28 refuses to send without one.
    """
    settings: dict[str, Any] = {}
    if getattr(openai, "api_type", None) not in ("azure", "azure_ad"):
        settings["api_type"] = "azure_ad"
    if not getattr(openai, "api_key", None):
        settings["api_key"] = PLACEHOLDER_API_KEY
    return settings


def snapshot_settings(openai: ModuleType, names: Iterable[str]) -> dict[str, Any]:
    """The current values of `names`, for `restore_settings` (absent ones remembered as absent)."""
    return {name: getattr(openai, name, _MISSING) for name in names}


def restore_settings(openai: ModuleType, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Put back `saved` values, except where the application changed ours since."""
    for name, value in saved.items():
        current = getattr(openai, name, _MISSING)
        # openai >= 1 writes its own placeholder into `api_key` when it builds the
        # module client with our provider and no key: that is still our doing.
        ours = current is wanted[name] or (name == "api_key" and current == _OPENAI_MISSING_KEY)
        if not ours:
            continue
        if value is _MISSING:
            delattr(openai, name)
        else:
            setattr(openai, name, value)


def install_openai_session(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = DEFAULT_SCOPE,
    *,
    openai_module: ModuleType | None = None,
    **options: Any,
) -> AzureADTokenAuth:
    """Make openai's module-level API authenticate with refreshing Azure AD tokens.

    - openai 0.28: sets `openai.requestssession` to a factory of `requests.Session`s
      that share one token cache, `openai.api_type = "azure_ad"` (unless already
      `"azure"` or `"azure_ad"`) and a placeholder `openai.api_key` if none is set.
    - openai >= 1: sets `openai.api_type = "azure"` and `openai.azure_ad_token_provider`
      (clearing `api_key` / `azure_ad_token`, which openai refuses alongside a
      provider) and resets the module client openai may have built already. The
      provider applies the https rule and `allowed_hosts` to the module client's base URL
      (`openai.azure_endpoint`, or `openai.base_url` when set) on every call, raising `InsecureTransportError` before a
      token is handed over.

    Call it once at start-up, before worker threads start. Options are those of
    `AzureADTokenAuth`. Returns the auth installed; `uninstall_openai_session()` undoes it.
    """
    openai = openai_module if openai_module is not None else importlib.import_module("openai")
    major = openai_major_version(openai)
    auth = AzureADTokenAuth(credential, scopes, **options)
    with _lock:
        previous = _installed.get(id(openai))
        if major == 0:
            wanted: dict[str, Any] = {"requestssession": _SessionFactory(auth), **openai0_settings(openai)}
        else:
            wanted = {
                "api_type": "azure",
                "api_key": None,
                "azure_ad_token": None,
                "azure_ad_token_provider": _ModuleClientProvider(openai, auth),
            }
        if previous is None:
            saved = snapshot_settings(openai, wanted)
        else:
            saved = previous[1]
            for name in wanted:
                saved.setdefault(name, getattr(openai, name, _MISSING))
            # What the first install set and this one leaves alone is still ours to undo.
            wanted = {**previous[2], **wanted}
        for name, value in wanted.items():
            setattr(openai, name, value)
        _installed[id(openai)] = (openai, saved, wanted)
        _reset(openai, major)
    return auth


def uninstall_openai_session(openai_module: ModuleType | None = None) -> bool:
    """Undo `install_openai_session`: restore what it replaced. False if nothing was installed.

    A setting the application changed after installing is left as the application set it.
    """
    openai = openai_module if openai_module is not None else importlib.import_module("openai")
    with _lock:
        record = _installed.pop(id(openai), None)
        if record is None:
            return False
        _, saved, wanted = record
        restore_settings(openai, saved, wanted)
        _reset(openai, openai_major_version(openai))
    return True


def _reset(openai: ModuleType, major: int) -> None:
    if major == 0:
        _forget_thread_sessions(openai)
        return
    # openai >= 1 builds its module client once, on first use; rebuild it with our provider.
    reset = getattr(openai, "_reset_client", None)
    if callable(reset):
        reset()
    elif hasattr(openai, "_client"):
        setattr(openai, "_client", None)  # noqa: B010 - openai < 1.2 has no _reset_client
