"""Azure AD tokens for aiohttp (>= 3.12), and for openai 0.28's async API (`acreate`).

```python
from azure_ad_token_auth.aiohttp import client_session, openai_aiosession

async with client_session() as session:  # DefaultAzureCredential, cognitiveservices scope
    await session.post(url, json=body)

async with openai_aiosession():  # openai 0.28: every acreate() in this block
    await openai.ChatCompletion.acreate(deployment_id="gpt-4o", messages=[...])
```

Importing this module needs aiohttp; `import azure_ad_token_auth` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextvars import ContextVar
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar

from ._extras import missing_extra

try:
    import aiohttp
    from aiohttp import ClientRequest, ClientResponse, hdrs, payload
    from yarl import URL
except ModuleNotFoundError as error:
    raise missing_extra(error, "aiohttp", "azure_ad_token_auth.aiohttp") from error

from ._adapter import AdapterBase
from ._cache import TokenCache
from ._drivers import async_flow
from ._errors import ConfigurationError, UnsupportedVersionError
from ._flow import Response
from ._forks import fork_safe_lock
from ._openai import openai0_settings, openai_major_version, restore_settings, snapshot_settings
from ._registry import SCOPE_NOT_GIVEN
from ._settings import ADAPTER_OPTION_NAMES, AdapterOptions, check_option_names

if TYPE_CHECKING:
    from aiohttp import ClientHandlerType
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["AzureADClientMiddleware", "ClientSessionOptions", "client_session", "openai_aiosession"]

if not hasattr(aiohttp, "ClientMiddlewareType"):  # pragma: no cover - depends on the installed aiohttp
    raise ImportError(
        f"azure_ad_token_auth.aiohttp needs aiohttp >= 3.12 (client middlewares); found {aiohttp.__version__}: "
        'pip install "azure-ad-token-auth[aiohttp]"'
    )

# aiohttp runs the middlewares again for every redirect hop, as a new request. As aiohttp
# does with a plain Authorization header, the token follows redirects only while they stay
# on the origin the session call began at: never to another origin, nor back from one.
# A middleware cannot tell a hop from a new call, so the session's TraceConfig
# (`AzureADClientMiddleware.trace_config`, aiohttp's public tracing) marks each call: its
# on_request_start pushes a `_Call` on a context-local stack and on_request_end/exception
# pop it. A request made from a trace hook or a middleware between two hops pushes its own
# and pops it before the next hop, so each request sees its own call at the top. No call on
# the stack: the session has no trace config, and the middleware refuses (nothing sent).
_calls: ContextVar[tuple[_Call, ...]] = ContextVar("azure_ad_token_auth_calls", default=())


class _Call:
    """One session call (its first request and every redirect hop): the origin it began at,
    and whether a hop has left it (then no later hop gets a token, back on it or not)."""

    __slots__ = ("left", "origin")

    def __init__(self) -> None:
        self.origin: URL | None = None
        self.left = False

    def on_origin(self, url: URL) -> bool:
        """Whether a request of this call to `url` may get the token: the call's first
        request, or a hop on its first origin while none has left it."""
        origin = url.origin()
        if self.origin is None:
            self.origin = origin
        elif origin != self.origin:
            self.left = True
        return not self.left


async def _call_starts(_session: object, context: SimpleNamespace, _params: object) -> None:
    context.azure_ad_token_auth_call = call = _Call()
    _calls.set((*_calls.get(), call))


async def _call_ends(_session: object, context: SimpleNamespace, _params: object) -> None:
    call = getattr(context, "azure_ad_token_auth_call", None)
    _calls.set(tuple(c for c in _calls.get() if c is not call))


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_call_starts)
    config.on_request_end.append(_call_ends)
    config.on_request_exception.append(_call_ends)
    return config


class AzureADClientMiddleware(AdapterBase):
    """An aiohttp client middleware setting `Authorization: Bearer <token>` on each request.

    ```python
    middleware = AzureADClientMiddleware(credential)
    session = aiohttp.ClientSession(middlewares=(middleware,), trace_configs=[middleware.trace_config])
    ```

    `credential` may be any azure-core credential, sync or async (`azure.identity.aio`),
    or a `TokenCache` shared with other adapters; `None` means `DefaultAzureCredential`.
    With `scopes` left out the scope follows each request's cloud (as
    `AzureADTokenAuth`'s). Keyword options (`refresh_margin`, `background_refresh`,
    `retry_backoff`, `timeout`, `jitter`, `tenant_id`, `enable_cae`) configure the
    caches it creates.

    The session needs the middleware's `trace_config` too (`client_session()` adds both):
    it tells each redirect hop from a new request. Without it every request is refused
    (`ConfigurationError`, nothing sent).

    - A 401 to a request that carried the token drops that token and resends the
      request once with a new one (with the claims of a CAE challenge), provided the
      body can be replayed (bytes, str, JSON, form data, seekable files; not async
      iterables or streams).
    - Plain http is refused (`InsecureTransportError`, before anything is sent) unless
      `allow_http=True`, loopback hosts included.
    - With `allowed_hosts` (patterns such as `"*.openai.azure.com"`), other hosts get no
      token, and no `Authorization` header at all. Once a redirect leaves the origin, no
      later hop gets one.
    """

    _client = "aiohttp"
    trace_config: ClassVar[aiohttp.TraceConfig] = _trace_config()
    """The session's `trace_configs` must hold it (one for all middlewares): `aiohttp.ClientSession(
    middlewares=(middleware,), trace_configs=[middleware.trace_config])`."""

    def __call__(self, request: ClientRequest, handler: ClientHandlerType | None = None) -> Awaitable[ClientResponse]:
        if handler is None:  # called as another client's auth (requests, httpx): nothing is sent
            raise self._wrong_client(request)
        return self._middleware(request, handler)

    async def _middleware(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        calls = _calls.get()
        if not calls:
            raise ConfigurationError(
                "AzureADClientMiddleware needs its trace config on the session, to tell redirect hops from new "
                "requests: aiohttp.ClientSession(middlewares=(middleware,), trace_configs=[middleware.trace_config]), "
                "or use azure_ad_token_auth.aiohttp.client_session(); nothing was sent"
            )
        if calls[-1].on_origin(request.url):
            return await self._send(request, handler)
        return await handler(request)

    async def _send(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """One request through the async driver (`async_flow`): the token, and the one resend after a 401."""
        flow = async_flow(self, request, str(request.url))
        response: ClientResponse | None = None
        try:
            outgoing = await anext(flow)
            while True:
                if response is not None:
                    await _release(response)  # the 401 being resent: its connection back to the pool
                response = await handler(outgoing)
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            assert response is not None
            return response
        except BaseException:
            if response is not None:  # a 401 we meant to resend: give its connection back
                response.release()
            raise
        finally:
            await flow.aclose()

    def _read(self, request: Any, response: Any) -> Response:
        # `request.headers`, not what we set: a middleware after ours may have replaced it.
        return Response(
            response.status, request.headers.get(hdrs.AUTHORIZATION), response.headers.get(hdrs.WWW_AUTHENTICATE)
        )

    def _replayable(self, request: Any) -> bool:
        body = request.body
        if isinstance(body, bytes):  # no body
            return True
        # aiohttp (>= 3.12.1) marks a payload it cannot send again: an unseekable file, or a
        # multipart form holding one. Not every release marks a half-read async iterable.
        return not isinstance(body, payload.AsyncIterablePayload) and getattr(body, "consumed", None) is False


async def _release(response: ClientResponse) -> None:
    """Read a response to its end so its connection goes back to the pool."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        await response.read()
    response.release()


class ClientSessionOptions(AdapterOptions, total=False):
    """`client_session`'s keyword options: the adapter's, then `aiohttp.ClientSession`'s
    (all but `timeout`, which is the cache's)."""

    base_url: Any
    connector: Any
    loop: Any
    cookies: Any
    headers: Any
    proxy: Any
    proxy_auth: Any
    skip_auto_headers: Any
    auth: Any
    json_serialize: Any
    json_serialize_bytes: Any
    request_class: Any
    response_class: Any
    ws_response_class: Any
    version: Any
    cookie_jar: Any
    connector_owner: bool
    raise_for_status: Any
    read_timeout: Any
    conn_timeout: Any
    auto_decompress: bool
    trust_env: bool
    requote_redirect_url: bool
    trace_configs: Any
    read_bufsize: int
    max_line_size: int
    max_field_size: int
    max_headers: int
    fallback_charset_resolver: Any
    middlewares: Any
    ssl_shutdown_timeout: Any


# What the installed aiohttp's ClientSession takes (older releases take fewer).
_SESSION_OPTIONS = frozenset(inspect.signature(aiohttp.ClientSession.__init__).parameters) - {"self", "timeout"}
_CLIENT_SESSION_OPTIONS = ADAPTER_OPTION_NAMES | _SESSION_OPTIONS


def client_session(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
    **kwargs: Unpack[ClientSessionOptions],
) -> aiohttp.ClientSession:
    """An `aiohttp.ClientSession` whose requests carry Azure AD tokens.

    `allow_http`, `allowed_hosts` and the cache options go to `AzureADClientMiddleware`,
    everything else to `aiohttp.ClientSession` (its `middlewares` run after ours).
    Call it from a coroutine, and close the session (`async with`) when done.
    """
    return _client_session(credential, scopes, "client_session", dict(kwargs))


def _client_session(
    credential: Credential | TokenCache | None, scopes: str | Sequence[str], caller: str, kwargs: dict[str, Any]
) -> aiohttp.ClientSession:
    check_option_names(kwargs, caller, _CLIENT_SESSION_OPTIONS)
    options = {name: kwargs.pop(name) for name in list(kwargs) if name in ADAPTER_OPTION_NAMES}
    middleware = AzureADClientMiddleware(credential, scopes, **options)
    middlewares = (middleware, *(kwargs.pop("middlewares", None) or ()))
    traces = [middleware.trace_config, *(kwargs.pop("trace_configs", None) or ())]
    return aiohttp.ClientSession(middlewares=middlewares, trace_configs=traces, **kwargs)


# -- openai 0.28 ----------------------------------------------------------------------

_lock = fork_safe_lock()
# Per openai module: how many `openai_aiosession` blocks are open, and the globals
# they replaced; restored when the last one closes, so overlapping blocks in
# different tasks do not undo each other.
_held: dict[int, tuple[int, dict[str, Any], dict[str, Any]]] = {}


def _hold_openai_globals(openai: ModuleType) -> None:
    with _lock:
        count, saved, wanted = _held.get(id(openai), (0, {}, {}))
        if count == 0:
            wanted = openai0_settings(openai)
            saved = snapshot_settings(openai, wanted)
            for name, value in wanted.items():
                setattr(openai, name, value)
        _held[id(openai)] = (count + 1, saved, wanted)


def _release_openai_globals(openai: ModuleType) -> None:
    with _lock:
        count, saved, wanted = _held.pop(id(openai))
        if count > 1:
            _held[id(openai)] = (count - 1, saved, wanted)
            return
        restore_settings(openai, saved, wanted)


@contextlib.asynccontextmanager
async def openai_aiosession(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
    *,
    openai_module: ModuleType | None = None,
    **options: Unpack[ClientSessionOptions],
) -> AsyncIterator[aiohttp.ClientSession]:
    """openai 0.28: `acreate()` calls inside the block send refreshing Azure AD tokens.

    ```python
    openai.api_base, openai.api_version = "https://<resource>.openai.azure.com", "2024-02-01"
    async with openai_aiosession(credential):
        await openai.Completion.acreate(deployment_id="gpt-35-turbo-instruct", prompt="...")
    ```

    Sets `openai.aiosession` (a ContextVar: tasks started inside the block inherit it)
    to a `client_session(credential, scopes, **options)`, and, like
    `install_openai_session()`, `openai.api_type = "azure_ad"` (unless `"azure"` or
    `"azure_ad"`) and a placeholder `openai.api_key` when none is set. On exit all of
    that is undone and the session closed. For openai >= 1, use
    `async_token_provider()` with `AsyncAzureOpenAI` instead.

    With no `scopes`, each request's token is for the scope of its own URL, as
    `AzureADClientMiddleware`'s with no scopes (`*.azure.us`: Azure Government's,
    `*.azure.cn`: Azure China's, a Foundry project's; else `DEFAULT_SCOPE`): `openai.api_base`
    may change inside the block.
    """
    check_option_names(options, "openai_aiosession", _CLIENT_SESSION_OPTIONS)
    openai = openai_module if openai_module is not None else importlib.import_module("openai")
    if openai_major_version(openai) != 0 or not isinstance(getattr(openai, "aiosession", None), ContextVar):
        raise UnsupportedVersionError(
            f"openai_aiosession() is for openai 0.28 (found {openai.__version__}); with openai >= 1, "
            "pass async_token_provider() to AsyncAzureOpenAI(azure_ad_token_provider=...)"
        )
    session = _client_session(credential, scopes, "openai_aiosession", dict(options))
    _hold_openai_globals(openai)
    previous = openai.aiosession.get()
    marker = openai.aiosession.set(session)
    try:
        yield session
    finally:
        try:
            try:
                openai.aiosession.reset(marker)
            except ValueError:  # exited in another context than it was entered in
                openai.aiosession.set(previous)
            _release_openai_globals(openai)
        finally:
            await session.close()
