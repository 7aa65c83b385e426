"""`shared_cache` across real processes with the real `DefaultAzureCredential`.

Every worker builds its own `DefaultAzureCredential`, which finds the App Service
managed-identity stand-in through `IDENTITY_ENDPOINT` / `IDENTITY_HEADER`. Tokens live
4 s (renewed about every 2 s); workers ask for a token every few milliseconds for a few
seconds. With the store on, the identity endpoint sees one request per renewal for the
whole fleet: every token it issued was used, and no two were issued within half a
token's life of each other.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import azure.identity  # noqa: F401 - imported before forking, as a preloading server does
import pytest
import requests

from azure_ad_token_auth import AzureADTokenAuth, TokenCache
from azure_ad_token_auth._store import ENV_VAR
from azure_ad_token_auth.testing import AzureOpenAIStandIn, ManagedIdentityEndpoint, TokenRegistry, fingerprint
from conftest import join_renewals

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and POSIX modes")

LIFETIME = 4.0  # issued as int(now + 4): 3 to 4 s of life
RUN_FOR = 3.0


def _ask_for(seconds: float, shared_cache: object) -> list[str]:
    """A worker's life: ask for a token every 5 ms for `seconds` after the first one
    (however slow the start on a loaded machine); the fingerprints it was handed."""
    cache = TokenCache(shared_cache=shared_cache)  # type: ignore[arg-type]
    seen: dict[str, None] = {fingerprint(cache.get_token()): None}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen[fingerprint(cache.get_token())] = None
        time.sleep(0.005)
    return list(seen)


def _spawned_worker(seconds: float) -> list[str]:
    # shared_cache=None: the environment variable switches the store on.
    return _ask_for(seconds, None)


def _check_one_request_per_renewal(identity: ManagedIdentityEndpoint, seen: list[Any]) -> None:
    issued = [r for r in identity.requests if r["status"] == 200]
    used = {fp for worker in seen for fp in worker}
    assert all(seen), "every worker got tokens"
    assert identity.calls >= 2, "the run spans at least one renewal"
    # Every token the endpoint issued was used by the fleet, except perhaps the last: on a
    # loaded machine a renewal started near the end may land after every worker stopped asking.
    assert len(issued) == identity.calls
    assert identity.calls - 1 <= len(used) <= identity.calls, (len(used), identity.calls)
    # ...and the endpoint never saw two requests for one renewal: a token is renewed at
    # half its life at the earliest (an unshared fleet asks N times within milliseconds).
    times = sorted(r["time"] for r in issued)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > (LIFETIME - 1) / 2 - 0.5, gaps  # slack for a loaded machine


@pytest.fixture
def identity() -> Any:
    with ManagedIdentityEndpoint(registry=TokenRegistry(), lifetime=LIFETIME) as endpoint, endpoint.patched_env():
        yield endpoint


def test_prefork_pool_of_16_makes_one_identity_request_per_renewal(identity, tmp_path: Path) -> None:
    store = tmp_path / "store"
    results = tmp_path / "results"
    results.mkdir()
    children = []
    for number in range(16):
        pid = os.fork()
        if pid == 0:  # a prefork worker (gunicorn, celery): its own cache and credential
            status = 1
            try:
                seen = _ask_for(RUN_FOR, store)
                (results / f"{number}.json").write_text(json.dumps(seen))
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        children.append(pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    assert statuses == [0] * 16
    seen = [json.loads((results / f"{n}.json").read_text()) for n in range(16)]
    _check_one_request_per_renewal(identity, seen)


def test_prefork_pool_without_the_store_asks_once_per_worker(identity, tmp_path: Path) -> None:
    """The baseline the store removes: each worker asks the endpoint itself."""
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                TokenCache(shared_cache=False).get_token()
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    assert [os.waitpid(pid, 0)[1] for pid in children] == [0] * 8
    assert identity.calls == 8


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_multiprocessing_pool_one_identity_request_per_renewal(
    identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "store"))  # code that cannot change
    context = multiprocessing.get_context(method)
    # Closed and joined, not terminated (the `with` block's exit): SIGTERM can land while a
    # worker's coverage holds its own lock, and its SIGTERM handler then waits on it for ever.
    pool = context.Pool(4)
    try:
        seen = pool.map(_spawned_worker, [RUN_FOR] * 4)
    finally:
        pool.close()
        pool.join()
    _check_one_request_per_renewal(identity, seen)


def _session_worker(connection: Any, store: str, url: str) -> None:
    """Serve commands from the parent: "post" sends a request with a requests session."""
    session = requests.Session()
    session.auth = auth = AzureADTokenAuth(shared_cache=store)
    try:
        while True:
            command = connection.recv()
            if command == "stop":
                break
            response = session.post(url, data=b"x")
            connection.send((response.status_code, auth.cache.status().fingerprint))
    finally:
        connection.close()


def test_a_401_in_one_process_spares_the_others_a_credential_call(tmp_path: Path) -> None:
    registry = TokenRegistry()
    context = multiprocessing.get_context("fork")
    identity = ManagedIdentityEndpoint(registry=registry)
    with identity, identity.patched_env(), AzureOpenAIStandIn(registry=registry) as server, server.patched_env():
        pipes, workers = [], []
        for _ in range(4):
            parent, child = context.Pipe()
            process = context.Process(
                target=_session_worker, args=(child, str(tmp_path / "s"), f"{server.base_url}/echo")
            )
            process.start()
            pipes.append(parent)
            workers.append(process)

        def post(worker: int) -> tuple[int, str]:
            pipes[worker].send("post")
            assert pipes[worker].poll(30)
            return pipes[worker].recv()  # type: ignore[no-any-return]

        try:
            first = {post(w) for w in range(4)}
            assert len(first) == 1 and identity.calls == 1
            ((status, old),) = first
            assert status == 200
            (token,) = [t for t in registry._tokens if fingerprint(t) == old]
            registry.revoke(token)  # the service now refuses it (a revoked session)

            # Worker 1 meets the 401 first: it marks the token rejected and renews...
            assert post(1)[0] == 200
            assert identity.calls == 2
            # ...and the others, on their own 401, take the renewed token from the store.
            # Worker 0's credential still holds the revoked token in its own cache; it
            # would hand it back: the store spares it that.
            after = {post(w) for w in (0, 2, 3)}
            assert identity.calls == 2
            assert len(after) == 1 and next(iter(after))[0] == 200 and next(iter(after))[1] != old
        finally:
            for pipe in pipes:
                pipe.send("stop")
            for process in workers:
                process.join(30)
    statuses = [r.token_status for r in server.requests]
    assert statuses.count("revoked") == 4  # one per worker, no more


def test_a_child_forked_during_a_renewal_does_not_keep_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A forked child shares the open lock file of a renewal running in another thread:
    unless it closes its copy, the lock outlives the renewal for as long as the child."""
    import threading

    from azure_ad_token_auth.testing import FakeCredential

    store = tmp_path / "s"
    slow = FakeCredential()
    slow.hang()
    renewing = TokenCache(slow, shared_cache=store, shared_cache_identity="app")
    thread = threading.Thread(target=renewing.get_token)
    thread.start()
    while slow.calls == 0:  # the renewal holds the lock and waits for its credential
        time.sleep(0.001)
    pid = os.fork()
    if pid == 0:
        time.sleep(3)  # a worker living on
        os._exit(0)
    try:
        slow.release.set()
        thread.join(10)
        other = FakeCredential()
        with caplog.at_level("WARNING"):
            # Waits at most timeout/4 = 0.25 s for the lock, then would go it alone.
            token = TokenCache(other, shared_cache=store, shared_cache_identity="app", timeout=1).get_token()
        assert token == slow.tokens[0] and other.calls == 0
        assert "shared token cache" not in caplog.text
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


_HOLD_LOCK = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
    "print('locked', flush=True); sys.stdin.read()"
)


def test_a_child_forked_while_a_renewal_waits_for_the_lock_does_not_keep_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The waiting thread's lock file is not yet among the held ones the child closes:
    unless the lock is released explicitly, the child's copy keeps it for its whole life."""
    import subprocess
    import threading

    from azure_ad_token_auth.testing import FakeCredential

    store = tmp_path / "s"
    TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="app").get_token()
    (lock,) = store.glob("*.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"  # mid-renewal elsewhere
    waiting = TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="app", timeout=20)
    thread = threading.Thread(target=waiting.get_token)
    thread.start()
    time.sleep(0.3)  # the renewal thread has opened the lock file and polls it
    pid = os.fork()
    if pid == 0:
        time.sleep(5)  # a worker living on
        os._exit(0)
    try:
        holder.kill()  # the other renewal ends (killed: the kernel drops its lock)
        holder.wait(10)
        thread.join(10)
        assert waiting.current is not None  # took the stored token under the lock, and released it
        other = FakeCredential()
        with caplog.at_level("WARNING"):
            token = TokenCache(other, shared_cache=store, shared_cache_identity="app", timeout=1).get_token()
        assert token == waiting.current.token and other.calls == 0
        assert "shared token cache" not in caplog.text
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        holder.kill()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _slow_worker(number: int, store: Path, results: Path, start: float) -> None:
    from azure_ad_token_auth.testing import FakeCredential

    collect = _Collect()
    logging.getLogger("azure_ad_token_auth").addHandler(collect)
    credential = FakeCredential(delay=1.0)  # a 1-second credential call
    # timeout=2.4: a renewal waits 0.6 s for another process's, less than its call takes.
    cache = TokenCache(credential, shared_cache=store, shared_cache_identity="app", timeout=2.4)
    # All 8 start together, however loaded the machine (a start time fixed before the forks could
    # pass before the last of them got here: it then found the token stored, and no wait ran out).
    (results / f"{number}.ready").write_text("ready")
    deadline = time.monotonic() + 60
    while len(list(results.glob("*.ready"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(max(0.0, start - time.time()))
    first = cache.get_token()
    phase1 = credential.calls
    (results / f"{number}.phase1").write_text("done")
    deadline = time.monotonic() + 60
    while not (results / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.invalidate(first)
    second = cache.get_token()
    outcome = {"phase1": phase1, "phase2": credential.calls - phase1, "token": fingerprint(second)}
    (results / f"{number}.json").write_text(json.dumps({**outcome, "warnings": collect.messages}))


def test_a_renewal_slower_than_the_lock_wait_does_not_turn_sharing_off(tmp_path: Path) -> None:
    """8 real processes, a 1-second credential, a 0.6 s lock wait: the waiters call their
    own credential for that renewal only. At the next renewal every one of them takes the
    token another process stored, with no call (main turned sharing off for good in 7)."""
    from azure_ad_token_auth.testing import FakeCredential

    store, results = tmp_path / "store", tmp_path / "results"
    results.mkdir()
    start = time.time() + 1.0
    children = []
    for number in range(8):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _slow_worker(number, store, results, start)
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        children.append(pid)
    try:
        deadline = time.monotonic() + 60
        while len(list(results.glob("*.phase1"))) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Another process renews (say, after a 401) and stores its token...
        renewer = FakeCredential()
        cache = TokenCache(renewer, shared_cache=store, shared_cache_identity="app")
        assert cache.invalidate(cache.get_token())
        renewed = cache.get_token()
        assert renewer.calls == 1
        (results / "go").write_text("go")  # ...and then each worker's token is due
    finally:
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
    assert statuses == [0] * 8
    outcomes = [json.loads((results / f"{n}.json").read_text()) for n in range(8)]
    assert sum(o["phase1"] for o in outcomes) >= 2, "the first renewal outlasted the lock wait"
    assert [o["phase2"] for o in outcomes] == [0] * 8
    assert {o["token"] for o in outcomes} == {fingerprint(renewed)}
    assert [o["warnings"] for o in outcomes] == [[]] * 8


def test_temp_files_of_a_writer_killed_mid_write_are_removed(tmp_path: Path) -> None:
    """A worker SIGKILLed between writing its temp file and renaming it leaves a live
    token on disk; a later renewal (any identity's) removes it once it is stale."""
    import signal

    from azure_ad_token_auth.testing import FakeCredential

    store = tmp_path / "s"
    TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="seed").get_token()
    join_renewals()  # no clean-up of the parent's runs while the child forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:

            def killed_before_the_rename(*args: object, **kwargs: object) -> None:
                os.write(write, b"x")
                time.sleep(60)

            os.replace = killed_before_the_rename  # type: ignore[assignment]
            TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="victim").get_token()
        finally:
            os._exit(1)
    assert os.read(read, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read)
    os.close(write)
    (temp,) = [p for p in store.iterdir() if p.name.startswith(".")]
    assert json.loads(temp.read_text())["token"].startswith("fake-")  # a live token, left behind
    old = time.time() - 120
    os.utime(temp, (old, old))  # two minutes later
    TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="other").get_token()
    join_renewals()
    assert not temp.exists()
