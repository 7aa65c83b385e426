"""The shared store trusts only what it verified, and keeps verifying it (issue 15).

Hostile directories, files and records, made where the machine allows by a real second
user: as root, a forked child becomes user nobody (65534) with `setuid`. FIFOs, sockets,
devices and symbolic links are real ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from azure_ad_token_auth import TokenCache
from azure_ad_token_auth._store import FAULT_BACKOFF
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential
from conftest import SettledTokenCache

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX modes, fork")

NOBODY = 65534


def _cache(directory: Path, credential: FakeCredential | None = None, **options: object) -> TokenCache:
    options.setdefault("shared_cache_identity", "app")
    return SettledTokenCache(credential or FakeCredential(), shared_cache=directory, **options)  # type: ignore[arg-type]


def _store_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "shared token cache" in r.getMessage()
    ]


def _record(directory: Path) -> Path:
    (path,) = directory.glob("*.json")
    return path


def as_nobody(action: Callable[[], None]) -> None:
    """Run `action` in a forked child that has become user nobody: a real second user."""
    if os.geteuid() != 0:
        pytest.skip("a second user needs root to switch to")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the second user's step failed"


@pytest.fixture
def shared_parent() -> Iterator[Path]:
    """A directory under /tmp that the second user can reach."""
    base = Path(tempfile.mkdtemp(prefix="store-trust-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- the whole path ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757], ids=["0777", "0770", "0757"])
def test_an_ancestor_others_can_write_is_refused(
    shared_parent: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """Whoever can write in an ancestor can rename the store away and put their own in
    its place: the store is refused before any token is written, however private it is."""
    parent = shared_parent / "shared"
    parent.mkdir()
    os.chmod(parent, mode)
    store = parent / "tokens"
    store.mkdir(mode=0o700)
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        cache = _cache(store, cred)
        cache.invalidate(cache.get_token())
        cache.get_token()
    assert os.listdir(store) == [] and cred.calls == 2
    (warning,) = _store_warnings(caplog)
    assert "writable by other users" in warning and str(parent) in warning


def test_an_ancestor_owned_by_another_user_is_refused(shared_parent: Path, caplog: pytest.LogCaptureFixture) -> None:
    parent = shared_parent / "theirs"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)  # they can chmod it, and swap what is inside
    store = parent / "tokens"
    store.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING):
        _cache(store).get_token()
    assert os.listdir(store) == []
    assert "belongs to user id 65534" in _store_warnings(caplog)[0]


def test_a_directory_another_user_made_in_a_sticky_parent_is_refused(
    shared_parent: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/tmp-like parent: the second user creates the store's parent first (0777), as they
    could for the default directory name; the store below it is refused."""
    sticky = shared_parent / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)

    def make_open_directory() -> None:
        (sticky / "a").mkdir(mode=0o777)
        os.chmod(sticky / "a", 0o777)

    as_nobody(make_open_directory)
    with caplog.at_level(logging.WARNING):
        _cache(sticky / "a" / "tokens").get_token()
    assert os.listdir(sticky / "a") == []
    assert "belongs to user id 65534" in _store_warnings(caplog)[0]


def test_a_sticky_world_writable_parent_above_the_users_own_directory_is_fine(shared_parent: Path) -> None:
    sticky = shared_parent / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    first, second = FakeCredential(), FakeCredential()
    token = _cache(sticky / "mine", first).get_token()
    assert _cache(sticky / "mine", second).get_token() == token
    assert (first.calls, second.calls) == (1, 0)


def test_directories_the_library_creates_are_0700_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        _cache(tmp_path / "x" / "a" / "tokens").get_token()
    finally:
        os.umask(previous)
    for created in (tmp_path / "x", tmp_path / "x" / "a", tmp_path / "x" / "a" / "tokens"):
        assert stat.S_IMODE(os.stat(created).st_mode) == 0o700, created


@pytest.mark.parametrize("umask", [0o277, 0o377, 0o777, 0o000, 0o022], ids=["277", "377", "777", "000", "022"])
def test_files_0600_and_directories_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """Records, their temp files, locks and rejection markers: under umask 277 or 377 they
    were made 0400, which the other processes of this user could not open for writing."""
    previous = os.umask(umask)
    try:
        cache = _cache(tmp_path / "x" / "tokens")
        cache.invalidate(cache.get_token())  # a rejection marker too
        store = tmp_path / "x" / "tokens"
        modes = {p.suffix: stat.S_IMODE(p.stat().st_mode) for p in store.iterdir()}
    finally:
        os.umask(previous)
    assert modes == {".json": 0o600, ".lock": 0o600, ".rejected": 0o600}
    for created in (tmp_path / "x", store):
        assert stat.S_IMODE(os.stat(created).st_mode) == 0o700, created


@pytest.mark.parametrize("umask", [0o277, 0o377, 0o777], ids=["277", "377", "777"])
def test_processes_share_under_a_umask_that_takes_the_owners_bits(shared_parent: Path, umask: int) -> None:
    """As a real unprivileged user (root opens any file whatever its mode): the second
    cache takes the first one's token from the store, no WARNING."""
    home = shared_parent / "home"
    home.mkdir(mode=0o700)
    os.chown(home, NOBODY, NOBODY)
    out = home / "out.json"

    def share_twice() -> None:
        os.umask(umask)
        warnings: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.WARNING:
                    warnings.append(record.getMessage())

        logging.getLogger("azure_ad_token_auth").addHandler(Collect())
        first, second, third = FakeCredential(), FakeCredential(), FakeCredential()
        token = _cache(home / "x" / "tokens", first).get_token()
        a = _cache(home / "x" / "tokens", second)
        shared = a.get_token() == token
        a.invalidate(token)  # marks it rejected: creating a marker, then renewing
        renewed = a.get_token()
        taken = _cache(home / "x" / "tokens", third).get_token() == renewed
        calls = [first.calls, second.calls, third.calls]
        os.umask(0o077)
        out.write_text(json.dumps({"shared": shared, "taken": taken, "calls": calls, "warnings": warnings}))

    as_nobody(share_twice)
    result = json.loads(out.read_text())
    assert result == {"shared": True, "taken": True, "calls": [1, 1, 0], "warnings": []}


def _directory_handle(tmp_path: Path) -> int:
    from azure_ad_token_auth._store import TokenStore

    return TokenStore(tmp_path / "s").handle()


def test_a_file_two_processes_create_at_once_is_the_one_that_won(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock or marker is hard-linked into place, which never replaces a file another
    process made meanwhile: both end up using that one, and no temp file is left."""
    from azure_ad_token_auth._store import _directory

    directory = _directory_handle(tmp_path)
    real_link = os.link

    def another_process_first(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=directory))  # it wins the race
        real_link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "link", another_process_first)
    fd = _directory.open_file(directory, "aadta-x.lock", os.O_RDONLY, "the lock", temp=".aadta-x.1.tmp")
    assert fd is not None
    try:
        assert os.fstat(fd).st_ino == os.stat("aadta-x.lock", dir_fd=directory).st_ino
    finally:
        os.close(fd)
    assert sorted(os.listdir(tmp_path / "s")) == ["aadta-x.lock"]


def test_a_file_removed_between_its_creation_and_its_opening_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean-up may remove a lock file just made: it is made again (up to three times),
    and a directory that will not hold one is a `StoreFault`, never an endless loop."""
    from azure_ad_token_auth._store import StoreFault, _directory

    directory = _directory_handle(tmp_path)
    real_link = os.link
    links: list[str] = []

    def swept_at_once(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        real_link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        links.append(dst)
        if len(links) == 1 or dst == "aadta-never.lock":
            os.unlink(dst, dir_fd=directory)  # a clean-up elsewhere removes it

    monkeypatch.setattr(os, "link", swept_at_once)
    fd = _directory.open_file(directory, "aadta-x.lock", os.O_RDONLY, "the lock", temp=".aadta-x.1.tmp")
    assert fd is not None and links == ["aadta-x.lock", "aadta-x.lock"]
    os.close(fd)
    with pytest.raises(StoreFault, match="keeps disappearing"):
        _directory.open_file(directory, "aadta-never.lock", os.O_RDONLY, "the lock", temp=".aadta-n.1.tmp")

    def refused(src: str, dst: str, **kwargs: int) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "link", refused)
    with pytest.raises(StoreFault, match="cannot create the marker: Permission denied"):
        _directory.open_file(directory, "aadta-y.rejected", os.O_RDONLY, "the marker", temp=".aadta-y.1.tmp")
    assert sorted(os.listdir(tmp_path / "s")) == ["aadta-x.lock"]  # no temp file left behind


def test_a_symbolic_link_in_a_directory_others_can_write_is_refused(
    shared_parent: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`<shared 0777>/link -> <a directory of mine>`: whoever can write in `shared` can
    point the link elsewhere for the next process, so the path is refused, as StrictModes
    would refuse it, even though where the link leads now is trustworthy."""
    mine = shared_parent / "mine"
    mine.mkdir()
    shared = shared_parent / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "link").symlink_to(mine)
    with caplog.at_level(logging.WARNING):
        _cache(shared / "link" / "tokens").get_token()
    assert os.listdir(mine) == []
    assert f"{shared} is writable by other users" in _store_warnings(caplog)[0]


def test_a_symbolic_link_another_user_made_in_a_sticky_parent_is_refused(
    shared_parent: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sticky = shared_parent / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    mine = shared_parent / "mine"
    mine.mkdir()
    as_nobody(lambda: (sticky / "link").symlink_to(mine))
    with caplog.at_level(logging.WARNING):
        _cache(sticky / "link" / "tokens").get_token()
    assert os.listdir(mine) == []
    assert "symbolic link in the world-writable directory" in _store_warnings(caplog)[0]


def test_symbolic_links_among_trusted_ancestors_are_followed(shared_parent: Path) -> None:
    """`/var/run -> /run`-style links, placed by root or the user, lead to the store."""
    real = shared_parent / "real"
    real.mkdir()
    base = shared_parent / "base"
    base.mkdir()
    (base / "absolute").symlink_to(real)
    (base / "relative").symlink_to("../real")
    first, second = FakeCredential(), FakeCredential()
    token = _cache(base / "absolute" / "tokens", first).get_token()
    assert _cache(base / "relative" / "tokens", second).get_token() == token
    assert (first.calls, second.calls) == (1, 0)
    assert len(list((real / "tokens").glob("*.json"))) == 1


# -- no time-of-check/time-of-use ----------------------------------------------------------


@pytest.mark.parametrize("replacement", ["symlink", "directory"])
def test_swapping_the_store_directory_after_first_use_changes_nothing(shared_parent: Path, replacement: str) -> None:
    """After the first use, the store's path is made to lead to the second user's
    directory (holding their planted record). Renewals keep using the directory that
    was verified: nothing is read from or written to the new one."""
    base = shared_parent / "base"
    base.mkdir(mode=0o700)
    store = base / "s"
    cred = FakeCredential()
    cache = _cache(store, cred)
    token = cache.get_token()
    record = json.loads(_record(store).read_text())
    record_name = _record(store).name
    attacker = shared_parent / "attacker"
    attacker.mkdir(mode=0o777)
    os.chown(attacker, NOBODY, NOBODY)

    def plant() -> None:
        (attacker / record_name).write_text(json.dumps({**record, "token": "planted-token"}))

    as_nobody(plant)
    os.rename(store, base / "moved")
    if replacement == "symlink":
        store.symlink_to(attacker)
    else:
        shutil.copytree(attacker, store)
        os.chmod(store, 0o700)
    assert cache.invalidate(token)
    fresh = cache.get_token()
    assert fresh == cred.tokens[1] and fresh != "planted-token"
    assert os.listdir(attacker) == [record_name]
    assert json.loads((base / "moved" / record_name).read_text())["token"] == fresh
    assert sorted(os.listdir(store)) == [record_name]


# -- regular files only, never blocking -------------------------------------------------


def _make(kind: str, path: Path, tmp: Path) -> Callable[[], None]:
    """Put a `kind` at `path`; returns how to undo anything that could hold a thread."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path, 0o600)

        def unblock() -> None:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # wakes a reader stuck in open()
            except OSError:
                pass

        return unblock
    if kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        here = os.getcwd()
        os.chdir(path.parent)  # a socket's path must be short
        try:
            server.bind(path.name)
        finally:
            os.chdir(here)
        return server.close
    if kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    if kind == "symlink":
        elsewhere = tmp / "elsewhere"
        elsewhere.write_text("{}")
        os.chmod(elsewhere, 0o600)
        path.symlink_to(elsewhere)
    return lambda: None


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "symlink"])
@pytest.mark.parametrize("where", ["record", "lock", "marker"])
def test_a_non_regular_file_in_the_store_is_refused_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, where: str
) -> None:
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("mknod needs root")
    store = tmp_path / "s"
    first = _cache(store)
    token = first.get_token()
    digest = _record(store).stem
    path = {
        "record": store / f"{digest}.json",
        "lock": store / f"{digest}.lock",
        "marker": store / f"{digest}.{first.status().fingerprint}.rejected",
    }[where]
    undo = _make(kind, path, tmp_path)
    cred = FakeCredential()
    cache = _cache(store, cred, timeout=5)
    got: list[str] = []
    try:
        with caplog.at_level(logging.WARNING):
            thread = threading.Thread(target=lambda: got.append(cache.get_token()), daemon=True)
            thread.start()
            thread.join(4)
            assert not thread.is_alive(), f"a {kind} as the {where} blocked the renewal"
    finally:
        undo()
    assert got == [cred.tokens[0]] and got[0] != token
    (warning,) = _store_warnings(caplog)
    assert "not a regular file" in warning


def test_a_fifo_record_never_freezes_the_event_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "s"
    _cache(store).get_token()
    undo = _make("fifo", _record(store), tmp_path)
    cred = AsyncFakeCredential()
    result: dict[str, object] = {}

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        cache = TokenCache(cred, shared_cache=store, shared_cache_identity="app", timeout=5)
        result["token"] = await cache.get_token_async()
        await asyncio.sleep(0.1)
        task.cancel()
        result["ticks"] = ticks

    try:
        with caplog.at_level(logging.WARNING):
            thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
            thread.start()
            thread.join(4)
            assert not thread.is_alive(), "the event loop froze on a FIFO record"
    finally:
        undo()
    assert result["token"] == cred.tokens[0]
    assert isinstance(result["ticks"], int) and result["ticks"] >= 5
    assert "is a FIFO" in _store_warnings(caplog)[0]


def test_an_oversized_record_is_corrupt_not_read_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "s"
    _cache(store).get_token()
    value = json.loads(_record(store).read_text())
    _record(store).write_text(json.dumps({**value, "padding": "x" * 100_000}))
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        assert _cache(store, cred).get_token() == cred.tokens[0]
    assert "larger than" in _store_warnings(caplog)[0]


# -- a record proves whose it is -------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [{"shared_cache_identity": "other-app"}, {"scopes": "https://storage.azure.com/.default"}, {"tenant_id": "t2"}],
    ids=["identity", "scopes", "tenant"],
)
def test_a_record_copied_from_another_key_is_refused_as_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, other: dict[str, str]
) -> None:
    store = tmp_path / "s"
    mine = _cache(store)
    mine.get_token()
    mine_record = _record(store)
    theirs = _cache(store, **other)  # type: ignore[arg-type]
    their_token = theirs.get_token()
    (their_record,) = [p for p in store.glob("*.json") if p != mine_record]
    shutil.copy(their_record, mine_record)  # the other key's record under this key's name
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        token = _cache(store, cred).get_token()
    assert token == cred.tokens[0] and token != their_token
    assert "made for another key" in _store_warnings(caplog)[0]


@pytest.mark.parametrize(
    ("expires_on", "warned"),
    [
        (lambda now: now * 1000, "milliseconds"),
        (lambda now: now * 1_000_000, "microseconds"),
        (lambda now: 1e300, "after the year 9999"),
        (lambda now: now - 10, None),  # expired: renewed, never served, nothing corrupt
    ],
    ids=["milliseconds", "microseconds", "absurd", "past"],
)
def test_a_record_is_checked_by_the_credential_validator(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, expires_on: Callable[[float], float], warned: str | None
) -> None:
    store = tmp_path / "s"
    _cache(store).get_token()
    value = json.loads(_record(store).read_text())
    _record(store).write_text(json.dumps({**value, "expires_on": expires_on(time.time())}))
    cred = FakeCredential()
    with caplog.at_level(logging.WARNING):
        assert _cache(store, cred).get_token() == cred.tokens[0]
    warnings = _store_warnings(caplog)
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0]


# -- the clean-up removes only what the store made --------------------------------------------


def _plant(store: Path, name: str, content: bytes = b"", mode: int = 0o600, age: float = 0.0) -> Path:
    path = store / name
    path.write_bytes(content)
    os.chmod(path, mode)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_the_clean_up_removes_only_what_the_store_made_and_can_prove(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, clock: object
) -> None:
    """A careless or hostile co-tenant of a `shared_cache` directory: files of its own whose
    names look like the store's (32 hex digits before the first dot, `.*.tmp` left for an
    hour) or copy the store's names with other content, mode or kind. The clean-up removes
    the expired key the store made, and nothing else (main removed every such file)."""
    store = tmp_path / "s"
    _cache(store, FakeCredential(lifetime=60), shared_cache_identity="one-shot").get_token()
    made = sorted(os.listdir(store))  # an expired key's record and lock, once the clock moves
    hexes = iter(f"{n:x}" * 32 for n in range(10, 16))
    outside = tmp_path / "outside"
    outside.write_text("someone else's")
    theirs = [
        _plant(store, "0123456789abcdef0123456789abcdef.dat", b"an md5-named cache file"),
        _plant(store, "0123456789abcdef0123456789abcdef.lock"),  # the old layout's name, not the store's now
        _plant(store, ".editor-swap.tmp", b"unsaved work", age=3600),
        _plant(store, f".aadta-{next(hexes)}.{'0' * 16}.tmp", b"not a record", age=3600),
        _plant(store, f"aadta-{(h := next(hexes))}.json", b'{"format": 3, "key": {"not": "its digest"}}'),
        _plant(store, f"aadta-{h}.lock"),  # its record is not the store's: the key is left alone
        _plant(store, f"aadta-{next(hexes)}.lock", b"not empty"),
        _plant(store, f"aadta-{next(hexes)}.{'1' * 8}.rejected", mode=0o644),
    ]
    fifo = store / f"aadta-{next(hexes)}.json"
    os.mkfifo(fifo, 0o600)
    link = store / f"aadta-{next(hexes)}.lock"
    link.symlink_to(outside)
    clock.shift(120)  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        _cache(store, shared_cache_identity="renewing").get_token()  # a renewal: its clean-up runs
    assert _store_warnings(caplog) == []
    left = set(os.listdir(store))
    assert not left & set(made), "the expired key the store made is removed"
    assert {p.name for p in theirs} | {fifo.name, link.name} <= left
    assert outside.read_text() == "someone else's" and theirs[0].read_bytes() == b"an md5-named cache file"


def test_a_stale_temp_file_the_store_made_is_removed_and_one_it_cannot_prove_is_not(tmp_path: Path) -> None:
    store = tmp_path / "s"
    _cache(store, shared_cache_identity="seed").get_token()
    record = _record(store)
    digest = record.stem.removeprefix("aadta-")
    mine = _plant(store, f".aadta-{digest}.{'a' * 16}.tmp", record.read_bytes(), age=120)  # a killed writer's
    empty = _plant(store, f".aadta-{digest}.{'b' * 16}.tmp", age=120)  # killed before it wrote
    fresh = _plant(store, f".aadta-{digest}.{'c' * 16}.tmp", record.read_bytes())  # being written now
    copied = _plant(store, f".aadta-{'f' * 32}.{'d' * 16}.tmp", record.read_bytes(), age=120)  # another key's name
    wrong_mode = _plant(store, f".aadta-{digest}.{'e' * 16}.tmp", record.read_bytes(), mode=0o400, age=120)
    _cache(store, shared_cache_identity="other").get_token()
    assert not mine.exists() and not empty.exists()
    assert fresh.exists() and copied.exists() and wrong_mode.exists()


# -- faults back off and are retried -----------------------------------------------------------


def test_a_fault_is_retried_after_the_back_off(tmp_path: Path, caplog: pytest.LogCaptureFixture, clock) -> None:
    store = tmp_path / "s"
    store.mkdir(mode=0o700)
    os.chmod(store, 0o755)
    cred = FakeCredential()
    cache = _cache(store, cred)
    with caplog.at_level(logging.WARNING):
        cache.get_token()
        os.chmod(store, 0o700)  # the operator fixes it
        cache.invalidate(cache.get_token())
        cache.get_token()
        assert cred.calls == 2 and os.listdir(store) == []  # still backing off
        clock.shift(FAULT_BACKOFF + 1)
        cache.invalidate(cache.get_token())
        shared = cache.get_token()
    assert cred.calls == 3
    other = FakeCredential()
    assert _cache(store, other).get_token() == shared and other.calls == 0
    assert len(_store_warnings(caplog)) == 1


# -- the second user's view ---------------------------------------------------------------


def test_another_user_can_neither_list_nor_read_the_store(shared_parent: Path) -> None:
    store = shared_parent / "s"
    _cache(store).get_token()
    record = _record(store)

    def snoop() -> None:
        for attempt in (lambda: os.listdir(store), lambda: record.read_bytes()):
            try:
                attempt()
            except PermissionError:
                continue
            raise AssertionError("another user reached the store")

    as_nobody(snoop)


# -- Windows -------------------------------------------------------------------------------------


def test_on_windows_the_store_is_not_used_one_warning_naming_the_platform(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No machine of this project runs Windows: its locking path is untested, so the
    store is not used there."""
    import sys

    from azure_ad_token_auth._store import _binding

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(_binding, "_platform_warned", False)
    first, second = FakeCredential(), FakeCredential()
    with caplog.at_level(logging.WARNING):
        _cache(tmp_path / "s", first).get_token()
        _cache(tmp_path / "s", second).get_token()
    assert (first.calls, second.calls) == (1, 1)
    assert not (tmp_path / "s").exists()
    (warning,) = _store_warnings(caplog)
    assert "not supported on win32" in warning
