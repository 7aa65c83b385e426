"""`install_openai_session`: Azure AD tokens for openai's module-level API in one call."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import requests

from ._cache import TokenCache
from ._clouds import scope_for_url
from ._credential import check_sync_credential
from ._errors import ConfigurationError, UnsupportedVersionError
from ._extras import require
from ._forks import fork_safe_lock
from ._openai_client import default_http_client
from ._openai_module import (
    ModuleClientProvider,
    OpenAIAuth,
    ScopeFromEndpoint,
    openai0_endpoint,
    openai1_endpoint,
)
from ._registry import SCOPE_NOT_GIVEN, is_default_scope
from ._requests import AzureADTokenAuth
from ._settings import AdapterOptions, check_option_names

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = [
    "PLACEHOLDER_API_KEY",
    "install_openai_session",
    "openai0_settings",
    "openai_major_version",
    "restore_settings",
    "snapshot_settings",
    "uninstall_openai_session",
]

# openai 0.28 refuses to send a request without an api_key, even when the session's
# auth supplies the Authorization header (which is what goes on the wire).
PLACEHOLDER_API_KEY = "azure-ad-token-auth"

_MISSING = object()
_OPENAI_MISSING_KEY = "<missing API key>"
_installed: dict[int, tuple[ModuleType, dict[str, Any], dict[str, Any]]] = {}
_lock = fork_safe_lock()
_POLICY_OPTIONS = ("allow_http", "allowed_hosts")
_CACHE_ACTIONS = ("keep_fresh", "prefetch")


def openai_major_version(openai: ModuleType) -> int:
    """The installed openai's major version, read from the package itself."""
    version = getattr(openai, "__version__", None) or getattr(getattr(openai, "version", None), "VERSION", None)
    if not isinstance(version, str) or not version.split(".")[0].isdigit():
        raise UnsupportedVersionError(f"cannot tell the version of the openai module {openai!r}")
    return int(version.split(".")[0])


class _SessionFactory:
    """openai 0.28 calls this once per thread, and again every 180 s per thread.

    Each session is what openai's own factory would have made (`openai.proxy`, read at
    each call, and the https adapter with openai's `max_retries`), or what the
    application's own `requestssession` made, with our auth on it.
    """

    def __init__(self, auth: AzureADTokenAuth, openai: ModuleType, previous: Any = None) -> None:
        self.auth = auth
        self._openai = openai
        self._previous = previous

    def __call__(self) -> requests.Session:
        session = self._base()
        session.auth = self.auth
        return session

    def _base(self) -> requests.Session:
        previous = self._previous
        if callable(previous) and not isinstance(previous, requests.Session):
            made: requests.Session = previous()
            return made
        session = requests.Session()
        if isinstance(previous, requests.Session):  # keep its settings; its auth is replaced
            session.proxies = dict(previous.proxies)
            session.headers.update(previous.headers)
            session.verify, session.cert, session.trust_env = previous.verify, previous.cert, previous.trust_env
            for prefix, adapter in previous.adapters.items():
                session.mount(prefix, adapter)
            return session
        proxies = _requests_proxies(getattr(self._openai, "proxy", None))
        if proxies:
            session.proxies = proxies
        retries = getattr(getattr(self._openai, "api_requestor", None), "MAX_CONNECTION_RETRIES", None)
        if retries is not None:
            session.mount("https://", requests.adapters.HTTPAdapter(max_retries=retries))
        return session

    def __repr__(self) -> str:
        return f"<openai session factory for {self.auth!r}>"


def _requests_proxies(proxy: object) -> dict[str, str] | None:
    """`openai.proxy` as requests' `proxies`, read as openai 0.28's own session factory reads
    it: a URL for both schemes, or a dict of them."""
    if proxy is None:
        return None
    if isinstance(proxy, str):
        return {"http": proxy, "https": proxy}
    if isinstance(proxy, dict):
        return dict(proxy)
    raise ConfigurationError(
        f"openai.proxy must be a URL string or a dict of URLs under 'http' and/or 'https', not {type(proxy).__name__}"
    )


def openai0_settings(openai: ModuleType) -> dict[str, Any]:
    """What openai 0.28 needs to send a request whose `Authorization` header is ours.

    `api_type="azure_ad"` (unless already `"azure_ad"`, or `"azure"` with the
    application's own key) and a placeholder `api_key` when none is set: 0.28 refuses to
    send without one. With `"azure"` openai would send that placeholder as `api-key`, which
    no session auth replaces; with `"azure_ad"` it goes as the `Authorization` ours replaces.
    """
    settings: dict[str, Any] = {}
    has_key = bool(getattr(openai, "api_key", None))
    api_type = getattr(openai, "api_type", None)
    if api_type != "azure_ad" and not (api_type == "azure" and has_key):
        settings["api_type"] = "azure_ad"
    if not has_key:
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
    scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
    *,
    openai_module: ModuleType | None = None,
    **options: Unpack[AdapterOptions],
) -> AzureADTokenAuth:
    """Make openai's module-level API authenticate with refreshing Azure AD tokens.

    - openai 0.28: sets `openai.requestssession` to a factory of `requests.Session`s
      that share one token cache, `openai.api_type = "azure_ad"` (unless already
      `"azure_ad"`, or `"azure"` with a key set) and a placeholder `openai.api_key` if none is set
      (0.28 insists on one; the session's auth replaces what it would send).
    - openai >= 1: sets `openai.api_type = "azure"` and `openai.azure_ad_token_provider`
      (clearing `api_key` / `azure_ad_token`, which openai refuses alongside a
      provider). The provider hands openai the real token, for every request and for
      realtime (websocket) connections, after applying the https rule and `allowed_hosts`
      to the endpoint openai's module settings name (`openai.base_url`, else
      `openai.azure_endpoint`, else `AZURE_OPENAI_ENDPOINT`), again whenever it changes
      (`InsecureTransportError` otherwise, before a token is fetched). Unless the
      application set `openai.http_client` itself, it also sets `openai.http_client` to
      openai's default client (`openai.DefaultHttpxClient`, openai >= 1.17) carrying our
      httpx/httpx2 auth, which applies the rules to the URL each request really goes to
      (refusing one the token may not go with, since openai put it there) and resends once
      after a 401. An `openai.http_client` the application set itself gets a request hook
      (its public `event_hooks`) applying the same rules to each request carrying a token.

    With no `scopes`, the scope follows the configured endpoint's cloud (`openai.api_base`
    on 0.28; `openai.base_url`, `openai.azure_endpoint` or `AZURE_OPENAI_ENDPOINT` on
    >= 1), read when a token is needed, so the endpoint may be set after install:
    `*.azure.us` gets Azure Government's scope, `*.azure.cn` Azure China's, other hosts
    `DEFAULT_SCOPE`.

    Call it once at start-up, before the first request: openai >= 1 builds its module
    client on first use, with the settings of that moment, and 0.28 keeps the session of
    each thread that made a request for up to 180 s before asking the factory again. A
    module client built while installed keeps this provider, which refuses once
    `openai.azure_ad_token_provider` names another (after `uninstall_openai_session()`,
    say). Options are those of `AzureADTokenAuth`.
    Returns the auth installed; `uninstall_openai_session()` undoes it.
    """
    check_option_names(options, "install_openai_session")
    check_sync_credential(
        credential.credential if isinstance(credential, TokenCache) else credential,
        "install_openai_session",
        "openai's module client is sync; an async client takes async_token_provider()",
    )
    openai = openai_module if openai_module is not None else require("openai", "openai", "install_openai_session()")
    major = openai_major_version(openai)
    endpoint = openai0_endpoint(openai) if major == 0 else openai1_endpoint(openai)
    original_scopes = scopes
    scoped: ScopeFromEndpoint | None = None
    if is_default_scope(scopes) and not isinstance(credential, TokenCache):
        cache_options = {k: v for k, v in options.items() if k not in _POLICY_OPTIONS}
        scoped = ScopeFromEndpoint(credential, cache_options, endpoint)
        # Known already: the cache for its scope from the start (no token for another).
        known = endpoint()
        scopes = scope_for_url(str(known)) if known else scopes
    auth = OpenAIAuth(credential, scopes, scoped, **options)
    with _lock:
        previous = _installed.get(id(openai))
        if major == 0:
            own = (
                previous[1].get("requestssession") if previous is not None else getattr(openai, "requestssession", None)
            )
            factory = _SessionFactory(auth, openai, None if own is _MISSING else own)
            wanted: dict[str, Any] = {"requestssession": factory, **openai0_settings(openai)}
        else:
            wanted = {"api_type": "azure", "api_key": None, "azure_ad_token": None}
            saved_before = previous[1] if previous is not None else {}
            own_client = (
                saved_before["http_client"] if "http_client" in saved_before else getattr(openai, "http_client", None)
            )
            if own_client in (None, _MISSING):
                # The same arguments as the provider's auth: with no scopes it follows each
                # request's cloud, drawing on the same shared caches. keep_fresh and prefetch
                # act on a cache, and the provider's auth has applied them to the right one.
                same: dict[str, Any] = {k: v for k, v in options.items() if k not in _CACHE_ACTIONS}
                http_client = default_http_client(openai, credential, original_scopes, **same)
                if http_client is not None:
                    wanted["http_client"] = http_client
                else:
                    _warn_no_default_http_client(openai)
            wanted["azure_ad_token_provider"] = ModuleClientProvider(openai, auth)
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
    return auth


_log = logging.getLogger("azure_ad_token_auth")
_no_default_client_warned = False


def _warn_no_default_http_client(openai: ModuleType) -> None:
    """openai < 1.17 has no `openai.DefaultHttpxClient`: no http client carrying the
    per-request check is set, and the module client sends through one we cannot reach.
    Once per process."""
    global _no_default_client_warned
    if _no_default_client_warned:
        return
    _no_default_client_warned = True
    _log.warning(
        "install_openai_session(): openai %s has no openai.DefaultHttpxClient (openai >= 1.17), so no http "
        "client checking each request's URL is set: only the endpoint openai's settings name is checked. "
        "Upgrade to openai >= 1.17, or set openai.http_client yourself (it then gets the request check). "
        "Logged once per process.",
        getattr(openai, "__version__", "?"),
    )


def uninstall_openai_session(openai_module: ModuleType | None = None) -> bool:
    """Undo `install_openai_session`: restore what it replaced. False if nothing was installed.

    A setting the application changed after installing is left as the application set it.
    """
    openai = openai_module if openai_module is not None else require("openai", "openai", "uninstall_openai_session()")
    with _lock:
        record = _installed.pop(id(openai), None)
        if record is None:
            return False
        _, saved, wanted = record
        restore_settings(openai, saved, wanted)
        provider = wanted.get("azure_ad_token_provider")
        if isinstance(provider, ModuleClientProvider):
            provider.release()
    return True
