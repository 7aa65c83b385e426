"""Shared fixtures: clocks, fake credentials, log capture that proves no token leaks."""

from __future__ import annotations

import http.server
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import time_machine

from azure_ad_token_auth import TokenCache, _timing
from azure_ad_token_auth._store import ENV_VAR
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, NetworkGuard, TokenRegistry, reset

# Nothing leaves the machine: every test runs under this guard, and a test that tried to
# reach beyond loopback fails even when the code under test swallowed the refusal. The
# Python processes a test starts (subprocesses, multiprocessing workers, forks) are
# guarded too, and their refusals fail the test that started them.
NETWORK_GUARD = NetworkGuard(children=True)


def pytest_configure(config: pytest.Config) -> None:
    global NETWORK_GUARD
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        # pytest-xdist's controller: its children are the workers, which load this file and
        # install the guard themselves. Guarding them as children would send their refusals
        # here, past the worker's own guard and the test that made them.
        NETWORK_GUARD = NetworkGuard()
    NETWORK_GUARD.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    NETWORK_GUARD.uninstall()


def _fail_on_violations(phase: str) -> Iterator[None]:
    try:
        return (yield)
    finally:
        violations = NETWORK_GUARD.take_violations()
        if violations:
            pytest.fail(f"left the machine during {phase}: " + "; ".join(violations), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _fail_on_violations("setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _fail_on_violations("the test"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _fail_on_violations("teardown"))


def child_pythonpath(*directories: str) -> str:
    """`PYTHONPATH` for a child process: `directories`, then the suite's own (which
    starts the child under the network guard)."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*directories, inherited] if inherited else directories)


# The threads alive when the running test began (`_threads_before_the_test`).
_EARLIER_THREADS: set[threading.Thread] = set()


def join_renewals(timeout: float = 5.0) -> None:
    """Wait for the renewal threads this test started to end, with the work each does once
    its token is handed over (the shared store's clean-up): a test that looks at the store's
    files after `get_token()` returns would otherwise race it. Threads an earlier test left
    (an abandoned call to a hung credential) are not waited for."""
    for thread in threading.enumerate():
        if thread.name == "azure-ad-token-auth-refresh" and thread not in _EARLIER_THREADS:
            thread.join(timeout)
            assert not thread.is_alive(), "a renewal thread is still running"


class SettledTokenCache(TokenCache):
    """A `TokenCache` whose `get_token()` returns once the renewal it waited for has also done
    what it does after handing the token over (`join_renewals`): for tests that look at or
    plant the store's files right after, as if no clean-up could run beside them."""

    def get_token(self) -> str:
        try:
            return super().get_token()
        finally:
            join_renewals()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for a background effect; fail the test (not hang) if it never happens."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.1f s" % timeout)
        time.sleep(0.002)


@pytest.fixture(autouse=True)
def _no_shared_cache_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` set would share tokens between
    tests through its store (every `FakeCredential` has one store key); tests that want
    the variable set it themselves."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(autouse=True)
def _threads_before_the_test() -> None:
    _EARLIER_THREADS.clear()
    _EARLIER_THREADS.update(threading.enumerate())


@pytest.fixture(autouse=True)
def _clean_world() -> Iterator[None]:
    """The testing kit's `reset()` around every test, as its fixtures do for a user's: the
    default credential's caches outlive a test, and caches made at import time too."""
    reset()
    yield
    reset()


class Clock:
    """The test's clocks: a frozen wall clock, and the cache's monotonic clock running
    on with an offset the test controls.

    `shift(s)`: time passes (both clocks move). `step(s)`: the wall clock is set
    forward or back (NTP, a suspended VM), durations are untouched. Whether
    time-machine itself moves `time.monotonic` differs between its versions, so the
    cache's monotonic clock is moved through its seam, `_timing.monotonic`.
    """

    def __init__(self, traveller: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch) -> None:
        self.traveller = traveller
        self.offset = 0.0
        real = time.monotonic
        monkeypatch.setattr(_timing, "monotonic", lambda: real() + self.offset)

    def shift(self, seconds: float) -> None:
        self.traveller.shift(seconds)
        self.offset += seconds

    def step(self, seconds: float) -> None:
        self.traveller.shift(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """A frozen wall clock at 1,900,000,000 and a movable monotonic one (see `Clock`)."""
    with time_machine.travel(1_900_000_000.0, tick=False) as traveller:
        yield Clock(traveller, monkeypatch)


@pytest.fixture
def fake() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def token_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG and above, from every logger."""
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_token_in(text: str, tokens: list[str]) -> None:
    for token in tokens:
        assert token not in text, "a token leaked"


def frames_holding(error: BaseException, token: str) -> list[str]:
    """`function.local` of every frame of `error`'s traceback whose locals hold `token`, by
    repr or as a `.token` (what an error tracker rendering locals would show)."""
    found = []
    tb = error.__traceback__
    while tb is not None:
        for name, value in tb.tb_frame.f_locals.items():
            if token in repr(value) or getattr(value, "token", None) == token:
                found.append(f"{tb.tb_frame.f_code.co_name}.{name}")
        tb = tb.tb_next
    return found


@pytest.fixture
def registry() -> TokenRegistry:
    """Tokens the stand-ins accept: issue them with `FakeCredential(registry=registry)`."""
    return TokenRegistry()


@pytest.fixture
def server(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """A loopback Azure OpenAI stand-in over plain http that checks every token against
    `registry`: a client sends it tokens only with `allow_http=True`."""
    with AzureOpenAIStandIn(registry=registry, tls=False) as stand_in:
        yield stand_in


@pytest.fixture
def https_server(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """The stand-in over https, as Azure serves: clients trust it with `verify=https_server.ca_path`
    (requests), `verify=https_server.ssl_context()` (httpx) or `ssl=` (aiohttp)."""
    with AzureOpenAIStandIn(registry=registry) as stand_in:
        yield stand_in


@pytest.fixture
def cred(registry: TokenRegistry) -> FakeCredential:
    """A counting credential whose tokens `server` accepts."""
    return FakeCredential(registry=registry)


def echo(server: AzureOpenAIStandIn) -> str:
    """The stand-in's route that reports what it received (body hash, token status)."""
    return f"{server.base_url}/echo"


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    """Answers 502 to anything (plain requests and CONNECT), after writing it down."""

    disable_nagle_algorithm = True

    def _record(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_CONNECT = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A loopback HTTP proxy that forwards nothing: `(url, what reached it)`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables from the machine running the tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def fresh_openai_state(openai: object) -> None:
    """Forget the module client openai >= 1 built, or the per-thread sessions openai 0.28 keeps,
    by public means: a new run of the module's own code (`importlib.reload`), never its privates."""
    import importlib

    version = str(getattr(openai, "__version__", "0"))
    if version.split(".")[0] == "0":
        importlib.reload(openai.api_requestor)  # type: ignore[attr-defined]
    else:
        importlib.reload(openai)  # type: ignore[arg-type]
