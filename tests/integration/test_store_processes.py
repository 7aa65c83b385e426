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
    with context.Pool(4) as pool:
        seen = pool.map(_spawned_worker, [RUN_FOR] * 4)
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
    with identity, identity.patched_env(), AzureOpenAIStandIn(registry=registry) as server:
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


def test_demo_with_eight_workers_shows_one_identity_request_per_renewal(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openai")
    from azure_ad_token_auth._cli import main

    assert main(["demo", "--workers", "8", "--requests", "4", "--interval", "0.7", "--token-lifetime", "3"]) == 0
    out = capsys.readouterr().out
    assert "8 workers x 4 requests" in out
    assert "32 carried a valid token, 0 did not" in out
    used = int(out.split(" tokens used")[0].rsplit(", ", 1)[1])
    identity_requests = int(out.split("Managed-identity requests: ")[1].split(" ")[0])
    assert used >= 2  # the run spans a renewal
    # One request per token; a renewal landing after the last request may go unused.
    assert used <= identity_requests <= used + 1
    # The workers' own count: credential calls, not the tokens they took from the store
    # (counted apart); one worker per renewal calls, not eight.
    counts = out.split("Credential calls in all workers: ")[1].split("\n")[0]
    calls, hits = (int(n) for n in counts.split("; tokens taken from the shared store: "))
    assert identity_requests <= calls <= identity_requests + 2, out
    assert calls + hits >= 8, out  # each worker's first token came one way or the other
