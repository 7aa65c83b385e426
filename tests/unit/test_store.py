"""The cross-process token store (`shared_cache`): its rules, checked on real files.

Caches in one process with separate credentials stand in for processes here (the store
shares nothing in memory); tests/integration/test_store_processes.py runs real processes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from azure_ad_token_auth import TokenCache
from azure_ad_token_auth._store import ENV_VAR, StoreKey, default_directory, shared_cache_setting
from azure_ad_token_auth.testing import FakeCredential
from conftest import SettledTokenCache, assert_no_token_in


def _cache(directory: Path, credential: FakeCredential | None = None, **options: object) -> TokenCache:
    """A cache on the store whose `get_token()` also waits for its renewal's clean-up."""
    options.setdefault("shared_cache_identity", "app")
    return SettledTokenCache(credential or FakeCredential(), shared_cache=directory, **options)  # type: ignore[arg-type]


def _record(directory: Path) -> Path:
    (path,) = directory.glob("*.json")
    return path


def _store_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "shared token cache" in r.getMessage()]


def test_one_credential_call_for_caches_sharing_a_store(tmp_path: Path) -> None:
    first, second = FakeCredential(), FakeCredential()
    token = _cache(tmp_path / "s", first).get_token()
    assert _cache(tmp_path / "s", second).get_token() == token
    assert (first.calls, second.calls) == (1, 0)


def test_status_counts_credential_calls_and_store_hits_apart(tmp_path: Path) -> None:
    """`credential_calls` are calls on the credential: a token taken from the store is a
    `store_hit`, not a call (the fleet's summary adds these up)."""
    credentials = [FakeCredential() for _ in range(3)]
    caches = [_cache(tmp_path / "s", c) for c in credentials]
    for cache in caches:
        cache.get_token()
    assert [c.calls for c in credentials] == [1, 0, 0]
    statuses = [cache.status() for cache in caches]
    assert [(s.credential_calls, s.store_hits, s.refreshes) for s in statuses] == [(1, 0, 1), (0, 1, 1), (0, 1, 1)]
    assert sum(s.credential_calls for s in statuses) == sum(c.calls for c in credentials)
    unshared = TokenCache(FakeCredential(), shared_cache=False)
    unshared.get_token()
    assert (unshared.status().credential_calls, unshared.status().store_hits) == (1, 0)


def test_directory_0700_files_0600_and_the_key_hashed_into_the_name(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    os.umask(0o022)
    _cache(directory, scopes="https://example.test/.default").get_token()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    names = os.listdir(directory)
    assert len(names) == 2 and {Path(n).suffix for n in names} == {".json", ".lock"}
    for name in names:
        assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o600
        assert "example" not in name and "app" not in name


def test_identity_scopes_tenant_and_cae_each_get_their_own_entry(tmp_path: Path) -> None:
    store = tmp_path / "s"
    variants: list[dict[str, Any]] = [
        {},
        {"shared_cache_identity": "other-app"},
        {"scopes": "https://storage.azure.com/.default"},
        {"tenant_id": "contoso"},
        {"enable_cae": True},
    ]
    credentials = [FakeCredential() for _ in variants]
    tokens = {_cache(store, cred, **v).get_token() for cred, v in zip(credentials, variants)}
    assert len(tokens) == len(variants)
    assert [c.calls for c in credentials] == [1] * len(variants)
    assert len(list(store.glob("*.json"))) == len(variants)


def test_a_renewal_by_one_cache_is_taken_by_the_others_when_their_token_is_due(tmp_path: Path, clock) -> None:
    credentials = [FakeCredential(lifetime=600) for _ in range(4)]
    caches = [_cache(tmp_path / "s", c) for c in credentials]
    first = {c.get_token() for c in caches}
    assert len(first) == 1
    clock.shift(350)  # past refresh_at (expiry - 300), still valid
    caches[0].get_token()  # hands out the old token, renews in the background
    from conftest import wait_until

    wait_until(lambda: caches[0].current is not None and caches[0].current.token not in first)
    renewed = caches[0].current.token  # type: ignore[union-attr]
    for cache in caches[1:]:
        cache.get_token()
        wait_until(lambda cache=cache: cache.current is not None and cache.current.token == renewed)  # type: ignore[misc]
    assert sum(c.calls for c in credentials) == 2


def test_an_expired_token_is_never_served_from_the_store(tmp_path: Path, clock) -> None:
    writer, reader = FakeCredential(lifetime=100), FakeCredential(lifetime=100)
    old = _cache(tmp_path / "s", writer).get_token()
    clock.shift(100)  # the stored token has just expired
    assert _cache(tmp_path / "s", reader).get_token() != old
    assert reader.calls == 1
    assert json.loads(_record(tmp_path / "s").read_text())["token"] != old


def test_a_stored_token_past_its_refresh_on_is_renewed_not_taken(tmp_path: Path, clock) -> None:
    _cache(tmp_path / "s", FakeCredential(lifetime=3600, refresh_in=1800)).get_token()
    clock.shift(1801)
    reader = FakeCredential()
    _cache(tmp_path / "s", reader).get_token()
    assert reader.calls == 1


@pytest.mark.parametrize(
    "refresh_on", [lambda now: 1800, lambda now: now - 10, lambda now: now + 1], ids=["lifetime", "past", "too-soon"]
)
def test_a_refresh_on_that_cannot_be_right_is_not_stored_so_the_others_still_share(
    tmp_path: Path, refresh_on: Any
) -> None:
    """Stored as given, such a `refresh_on` made every other process find the token due
    and call its own credential: the fleet lost its sharing."""
    from azure.core.credentials import AccessTokenInfo

    def answer() -> AccessTokenInfo:
        now = time.time()
        return AccessTokenInfo(f"token-{now}", int(now + 3600), refresh_on=int(refresh_on(now)))

    first, second = FakeCredential(result=answer), FakeCredential(result=answer)
    token = _cache(tmp_path / "s", first).get_token()
    assert _cache(tmp_path / "s", second).get_token() == token
    assert (first.calls, second.calls) == (1, 0)
    assert json.loads(_record(tmp_path / "s").read_text())["refresh_on"] is None


def test_a_token_rejected_in_one_cache_is_not_taken_by_another(tmp_path: Path) -> None:
    first, second = FakeCredential(), FakeCredential()
    a = _cache(tmp_path / "s", first)
    token = a.get_token()
    assert a.invalidate(token)
    fresh = _cache(tmp_path / "s", second).get_token()
    assert fresh != token and second.calls == 1
    # ...and that renewal reaches the cache that saw the 401, without a call of its own.
    assert a.get_token() == fresh and first.calls == 1
    # The new token's write cleared the old token's marker (its clean-up, once the token is handed over).
    assert list((tmp_path / "s").glob("*.rejected")) == []


def test_a_claims_challenge_always_asks_the_credential(tmp_path: Path) -> None:
    first, second = FakeCredential(), FakeCredential()
    a, b = _cache(tmp_path / "s", first), _cache(tmp_path / "s", second)
    token = a.get_token()
    b.get_token()
    b.invalidate(token, claims='{"access_token":{"nbf":{"essential":true}}}')
    answer = b.get_token()
    assert answer != token
    assert second.claims == ['{"access_token":{"nbf":{"essential":true}}}']
    # That token answers one challenge: it is not handed to the others through the store.
    assert json.loads(_record(tmp_path / "s").read_text())["token"] == token


def test_async_credential_shares_through_the_store_without_blocking_the_loop(tmp_path: Path) -> None:
    import asyncio

    from azure_ad_token_auth.testing import AsyncFakeCredential

    async def main() -> tuple[str, str, int, int]:
        first, second = AsyncFakeCredential(), AsyncFakeCredential()
        a = TokenCache(first, shared_cache=tmp_path / "s", shared_cache_identity="x")
        b = TokenCache(second, shared_cache=tmp_path / "s", shared_cache_identity="x")
        lock_path = next((tmp_path / "s").glob("*.lock"), None)
        assert lock_path is None
        token = await a.get_token_async()
        # While another process holds the lock, the loop keeps running.
        fd = os.open(next((tmp_path / "s").glob("*.lock")), os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        pending = asyncio.create_task(b.get_token_async())
        await asyncio.sleep(0.2)
        assert not pending.done()
        os.close(fd)
        other = await pending
        task.cancel()
        assert ticks > 10
        return token, other, first.calls, second.calls

    token, other, first_calls, second_calls = asyncio.run(main())
    assert token == other and (first_calls, second_calls) == (1, 0)


# -- faults: one WARNING, the request succeeds, nothing lost -----------------------------


def test_corrupt_record_one_warning_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "s"
    _cache(store).get_token()
    _record(store).write_bytes(b'{"format": 1, "token": ')
    cred = FakeCredential()
    cache = _cache(store, cred)
    with caplog.at_level(logging.WARNING):
        token = cache.get_token()
    assert cred.calls == 1
    assert len(_store_warnings(caplog)) == 1 and "corrupt" in caplog.text
    assert json.loads(_record(store).read_text())["token"] == token  # repaired for the others
    later = FakeCredential()
    assert _cache(store, later).get_token() == token and later.calls == 0


def test_long_held_lock_this_renewal_alone_goes_without_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Slow is not broken: a holder slower than the lock wait costs the waiter a call of
    its own for that renewal only, with no WARNING; the next renewal shares again."""
    store = tmp_path / "s"
    token = _cache(store).get_token()
    fd = os.open(next(store.glob("*.lock")), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process, slow mid-renewal
    cred = FakeCredential()
    cache = _cache(store, cred, timeout=0.4)  # waits timeout/4 = 0.1 s for the lock
    try:
        with caplog.at_level(logging.WARNING):
            got = cache.get_token()
    finally:
        os.close(fd)
    assert got != token and cred.calls == 1
    assert _store_warnings(caplog) == []
    # The lock is free again: a renewal elsewhere is taken from the store, no call.
    renewer = _cache(store)
    assert renewer.invalidate(renewer.get_token())
    fresh = renewer.get_token()
    assert cache.invalidate(got)
    assert cache.get_token() == fresh and cred.calls == 1


def test_record_of_another_user_is_refused_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    store = tmp_path / "s"
    old = _cache(store).get_token()
    os.chown(_record(store), 65534, 65534)
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        token = _cache(store, cred).get_token()
    assert token != old and cred.calls == 1
    assert len(_store_warnings(caplog)) == 1 and "not this user's alone" in caplog.text


def test_directory_open_to_others_is_refused_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "s"
    store.mkdir(mode=0o755)
    os.chmod(store, 0o755)
    cred = FakeCredential()
    cache = _cache(store, cred)
    with caplog.at_level(logging.WARNING):
        token = cache.get_token()
        cache.invalidate(token)
        cache.get_token()
    assert cred.calls == 2 and os.listdir(store) == []
    assert len(_store_warnings(caplog)) == 1 and "chmod 700" in caplog.text


def test_symlinked_store_directory_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "s").symlink_to(target)
    with caplog.at_level(logging.WARNING):
        _cache(tmp_path / "s").get_token()
    assert os.listdir(target) == [] and len(_store_warnings(caplog)) == 1


def _scenario_as_nobody(store: Path, case: str, out: Path) -> None:
    """In a forked child that has become user nobody (root reads and writes through any mode)."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("azure_ad_token_auth").addHandler(Collect())
    TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="x").get_token()
    (record,) = store.glob("*.json")
    if case == "unreadable":
        os.chmod(record, 0)
    elif case == "read-only":
        os.chmod(store, 0o500)
    cred = FakeCredential()
    cache = TokenCache(cred, shared_cache=store, shared_cache_identity="x")
    cache.invalidate(cache.get_token())
    token = cache.get_token()
    os.chmod(store, 0o700)
    out.write_text(json.dumps({"calls": cred.calls, "ok": bool(token), "warnings": warnings}))


@pytest.mark.parametrize(("case", "calls"), [("unreadable", 2), ("read-only", 1)])
def test_unreadable_or_read_only_store_one_warning_request_succeeds(case: str, calls: int) -> None:
    """Run as a real second user (nobody), in a forked child.

    A read-only store still hands out its token (no call); the first write (marking the
    rejected token) fails, and from then on the cache keeps to its own token.
    """
    if os.geteuid() != 0:
        pytest.skip("runs the scenario as user nobody; needs root to switch")
    base = Path(tempfile.mkdtemp())
    try:
        os.chmod(base, 0o755)
        store = base / "s"
        store.mkdir(mode=0o700)
        os.chown(store, 65534, 65534)
        out = base / "out"
        out.touch()
        os.chown(out, 65534, 65534)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _scenario_as_nobody(store, case, out)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        result = json.loads(out.read_text())
        assert [w for w in result["warnings"] if "shared token cache" in w] == result["warnings"]
        assert len(result["warnings"]) == 1 and "Permission denied" in result["warnings"][0]
        assert (result["calls"], result["ok"]) == (calls, True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_token_stays_out_of_logs_and_reprs(tmp_path: Path, token_log: pytest.LogCaptureFixture) -> None:
    cred = FakeCredential()
    cache = _cache(tmp_path / "s", cred)
    token = cache.get_token()
    cache.invalidate(token)
    _record(tmp_path / "s").write_text("garbage")
    cache.get_token()
    assert_no_token_in(token_log.text + repr(cache) + repr(cache._binding), cred.tokens)


def test_shared_cache_setting_and_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert shared_cache_setting(None) is None
    assert shared_cache_setting(False) is None
    assert shared_cache_setting(True) == default_directory()
    assert shared_cache_setting(str(tmp_path)) == tmp_path
    for off in ("", "0", "false", "Off"):
        monkeypatch.setenv(ENV_VAR, off)
        assert shared_cache_setting(None) is None
    monkeypatch.setenv(ENV_VAR, "1")
    assert shared_cache_setting(None) == default_directory()
    assert shared_cache_setting(False) is None  # code that says no wins over the environment
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    cred = FakeCredential()
    TokenCache(cred, shared_cache_identity="app").get_token()
    assert list((tmp_path / "env").glob("*.json"))
    with pytest.raises(TypeError, match="shared_cache must be"):
        shared_cache_setting(3)  # type: ignore[arg-type]


def test_default_directory_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_directory() == tmp_path / "azure-ad-token-auth"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_directory() == Path(tempfile.gettempdir()) / f"azure-ad-token-auth-{os.geteuid()}"


def test_a_record_whose_token_cannot_go_in_a_header_is_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "s"
    _cache(store).get_token()
    record = _record(store)
    value = json.loads(record.read_text())
    value["token"] = "abc\r\nX-Evil: 1"
    record.write_text(json.dumps(value))
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        token = _cache(store, cred).get_token()
    assert token == cred.tokens[0] and "corrupt" in caplog.text


def test_async_long_held_lock_the_token_still_comes_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from azure_ad_token_auth.testing import AsyncFakeCredential

    store = tmp_path / "s"
    _cache(store).get_token()
    fd = os.open(next(store.glob("*.lock")), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    cred = AsyncFakeCredential()
    try:
        cache = TokenCache(cred, shared_cache=store, shared_cache_identity="app", timeout=0.4)
        with caplog.at_level(logging.WARNING):
            token = asyncio.run(cache.get_token_async())
    finally:
        os.close(fd)
    assert token == cred.tokens[0] and cred.calls == 1
    assert _store_warnings(caplog) == []
    assert cache._binding.active  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 60000,  # json raises RecursionError, not ValueError
        b'{"format": 1, "token": "abc", "expires_on": NaN}',
        b'{"format": 1, "token": "abc", "expires_on": Infinity}',
        b'{"format": 1, "token": "abc", "expires_on": 1e400}',
        b'{"format": 1, "token": "abc", "expires_on": true}',
        b'{"format": 1, "token": "abc", "expires_on": 4000000000, "refresh_on": NaN}',
    ],
    ids=["nested", "nan", "infinity", "overflow", "bool", "nan-refresh-on"],
)
def test_a_record_of_any_corrupt_shape_is_replaced_and_the_request_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, payload: bytes
) -> None:
    store = tmp_path / "s"
    _cache(store).get_token()
    _record(store).write_bytes(payload)
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        token = _cache(store, cred).get_token()
    assert token == cred.tokens[0] and cred.calls == 1  # never "abc", a token that never expires
    assert len(_store_warnings(caplog)) == 1 and "corrupt" in caplog.text


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("expires_on", "1" + "0" * 4000),  # an int no float can hold: math.isfinite raises OverflowError
        ("expires_on", "NaN"),
        ("expires_on", "1e400"),
        ("expires_on", "true"),
        ("expires_on", '"4000000000"'),
        ("refresh_on", "1" + "0" * 4000),
        ("refresh_on", "NaN"),
    ],
    ids=["huge-int", "nan", "overflow", "bool", "string", "huge-int-refresh-on", "nan-refresh-on"],
)
def test_a_record_with_its_own_key_and_a_corrupt_expiry_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, field: str, literal: str
) -> None:
    """The record names this cache's key, so only its expiry can be wrong: still one WARNING
    and a new token, never an exception to the caller."""
    store = tmp_path / "s"
    _cache(store).get_token()
    record = json.loads(_record(store).read_text())
    record[field] = "PLACEHOLDER"
    _record(store).write_text(json.dumps(record).replace('"PLACEHOLDER"', literal))
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        token = _cache(store, cred).get_token()
    assert token == cred.tokens[0] and cred.calls == 1
    assert len(_store_warnings(caplog)) == 1 and "corrupt" in caplog.text


def test_tests_run_without_the_machine_s_shared_cache_variable() -> None:
    """Run the suite with `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` set: without conftest
    clearing it, tests would hand each other tokens through the store and miscount calls."""
    assert ENV_VAR not in os.environ
    assert shared_cache_setting(None) is None


def test_a_thousand_one_shot_identities_leave_only_the_live_ones(tmp_path: Path, clock) -> None:
    """Each renewal removes the files of a few other keys whose token has expired (under
    their lock): the directory holds about the live identities, not every one ever seen."""
    store = tmp_path / "s"
    for number in range(1000):
        _cache(store, FakeCredential(lifetime=60), shared_cache_identity=f"job-{number}").get_token()
        clock.shift(1)  # one new identity a second; each token lives a minute
    names = os.listdir(store)
    assert len(names) < 300, len(names)  # main leaves 2,000 (a record and a lock each)
    assert len([n for n in names if n.endswith(".json")]) >= 60  # the live ones stay
    # The last minute's identities still share their token.
    last = FakeCredential()
    assert _cache(store, last, shared_cache_identity="job-999").get_token() and last.calls == 0


def test_a_swept_lock_file_is_never_locked_by_two_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal that opened a key's lock file just before a sweep removed it must not
    keep the lock on the removed file (which excludes nobody): it re-takes it on the file
    now in the directory, so two renewals never run together."""
    from azure_ad_token_auth._store import StoreKey, TokenStore, _lock, _records

    store = TokenStore(tmp_path / "s")
    key = StoreKey(["s"], None, False, "a")
    _lock.release(_locked(store, key))
    (path,) = (tmp_path / "s").glob("*.lock")
    sweeper = os.open(path, os.O_RDWR)
    fcntl.flock(sweeper, fcntl.LOCK_EX)
    real = _lock.try_lock
    swept: list[bool] = []

    def sweep_in_between(fd: int) -> bool:
        if not swept:
            swept.append(True)
            os.unlink(path)  # the sweep removes the file this renewal just opened...
            os.close(sweeper)  # ...and unlocks it
        return real(fd)

    monkeypatch.setattr(_records, "try_lock", sweep_in_between)
    fd = _locked(store, key)
    try:
        assert os.fstat(fd).st_ino == os.stat(path).st_ino  # locked on the file in the directory
        other = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # so it excludes the next renewal
        os.close(other)
    finally:
        _lock.release(fd)


def _locked(store: object, key: object) -> int:
    steps = store.lock_steps(key, 1.0)  # type: ignore[attr-defined]
    try:
        while True:
            time.sleep(next(steps))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


# -- the clean-up: off the event loop, bounded by count ----------------------------------------


class _Counted:
    """A directory stream that counts (and names) the entries read from it."""

    def __init__(self, stream: Any, seen: list[str]) -> None:
        self.stream, self.seen = stream, seen

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        entry = next(self.stream)
        self.seen.append(entry.name)
        return entry

    def close(self) -> None:
        self.stream.close()


def _count_directory_reads(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[bool]]:
    """Names read from directories (`os.scandir`, `os.listdir`), and for each read whether an
    event loop was running in the reading thread."""
    import asyncio

    seen: list[str] = []
    on_a_loop: list[bool] = []
    real_listdir, real_scandir = os.listdir, os.scandir

    def loop_running() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def listdir(*args: Any) -> list[str]:
        on_a_loop.append(loop_running())
        names = real_listdir(*args)
        seen.extend(names)
        return names

    def scandir(*args: Any) -> _Counted:
        on_a_loop.append(loop_running())
        return _Counted(real_scandir(*args), seen)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "scandir", scandir)
    return seen, on_a_loop


def test_an_async_renewal_never_reads_the_directory_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-up lists the directory: on the loop it stalled every coroutine (56-69 ms
    per async renewal at 10,000 keys). It runs in a worker thread, and still runs."""
    import asyncio

    from azure_ad_token_auth._credential import TokenInfo
    from azure_ad_token_auth._store import TokenStore
    from azure_ad_token_auth.testing import AsyncFakeCredential

    store = tmp_path / "s"
    gone = StoreKey(["s"], None, False, "gone")
    TokenStore(store).write(gone, TokenInfo("an-expired-token", time.time() - 10, None))  # for the clean-up
    (expired_record,) = store.glob("*.json")
    seen, on_a_loop = _count_directory_reads(monkeypatch)

    async def main() -> int:
        credential = AsyncFakeCredential()
        cache = TokenCache(credential, shared_cache=store, shared_cache_identity="app")
        cache.invalidate(await cache.get_token_async())
        await cache.get_token_async()
        for _ in range(500):  # the clean-up runs beside the loop
            if not expired_record.exists():
                break
            await asyncio.sleep(0.01)
        return credential.calls

    assert asyncio.run(main()) == 2
    assert on_a_loop and not any(on_a_loop), "the directory was read on the event loop"
    assert not expired_record.exists() and seen


def test_everyone_waiting_for_a_renewal_has_its_token_before_the_clean_up_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-up ran before the renewal landed: 16 threads on a cold cache (or one after a
    401, or with `background_refresh=False`) waited for a directory read too, on a slow
    filesystem for as long as it took. Here the directory read waits for them all to have
    their token; before, they waited for it, and it gave up after 5 s."""
    import threading

    from conftest import wait_until

    served, everyone = [], threading.Event()
    waited_for_everyone: list[bool] = []
    real_scandir = os.scandir

    def slow_scandir(*args: Any) -> Any:  # the clean-up's directory read, on a slow filesystem
        waited_for_everyone.append(everyone.wait(5))
        return real_scandir(*args)

    monkeypatch.setattr(os, "scandir", slow_scandir)
    credential = FakeCredential(delay=0.2)  # the threads below all wait for this renewal
    cache = TokenCache(credential, shared_cache=tmp_path / "s", shared_cache_identity="app")  # not settled

    def ask() -> None:
        served.append(cache.get_token())
        if len(served) == 16:
            everyone.set()

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    wait_until(lambda: bool(waited_for_everyone))
    assert waited_for_everyone == [True] and len(set(served)) == 1 and credential.calls == 1


def test_a_renewal_reads_a_bounded_number_of_entries_whatever_the_directory_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 keys (a record and a lock each): each renewal's clean-up reads at most
    `SWEEP_ENTRIES` names (main read all 20,000 twice per renewal), going on where the last
    one stopped, so successive renewals cover the directory instead of its first names."""
    from azure_ad_token_auth._store._sweep import SWEEP_ENTRIES

    store = tmp_path / "s"
    cache = _cache(store, retry_backoff=0.001)  # a renewal per 401, as fast as the test asks
    token = cache.get_token()
    directory = os.open(store, os.O_RDONLY)
    try:
        for suffix in ("json", "lock"):
            os.close(os.open(f"base.{suffix}", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=directory))
            for number in range(10_000):  # names are what a listing reads: links are quicker to make than files
                os.link(f"base.{suffix}", f"aadta-{number:032x}.{suffix}", src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)
    seen, _ = _count_directory_reads(monkeypatch)
    read: list[list[str]] = []
    for _ in range(4):
        before = len(seen)
        assert cache.invalidate(token)
        token = cache.get_token()
        read.append(seen[before:])
    assert all(0 < len(names) <= SWEEP_ENTRIES for names in read), [len(names) for names in read]
    assert len({name for names in read for name in names}) == sum(len(names) for names in read)
