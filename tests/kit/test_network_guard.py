"""The suite-wide network guard: nothing but loopback, refused before any system call."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests

from azure_ad_token_auth.testing import AzureOpenAIStandIn, NetworkGuard, NonLoopbackConnectionError, patched_environ
from azure_ad_token_auth.testing._guard import CHILD_BOOTSTRAP, is_loopback
from conftest import NETWORK_GUARD, child_pythonpath

pytest_plugins = ["pytester"]

SRC = str(Path(__file__).resolve().parents[2] / "src")
SCOPE = "https://cognitiveservices.azure.com/.default"
# Only the members that would ask the network from this process: the others run
# subprocesses (az, pwsh, azd), which an in-process guard does not see.
IN_PROCESS_ONLY = {
    "exclude_cli_credential": True,
    "exclude_powershell_credential": True,
    "exclude_developer_cli_credential": True,
    "exclude_visual_studio_code_credential": True,
    "exclude_shared_token_cache_credential": True,
}


def test_the_guard_is_on_for_every_test() -> None:
    assert NetworkGuard._active is NETWORK_GUARD
    with NETWORK_GUARD.capture() as caught:
        with pytest.raises(NonLoopbackConnectionError, match="192.0.2.1"):
            socket.create_connection(("192.0.2.1", 443), timeout=1)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with pytest.raises(NonLoopbackConnectionError):
                raw.connect(("192.0.2.1", 443))
            # The same audit event guards connect_ex.
            with pytest.raises(NonLoopbackConnectionError):
                raw.connect_ex(("192.0.2.2", 443))
        finally:
            raw.close()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(NonLoopbackConnectionError):
                udp.sendto(b"x", ("192.0.2.3", 53))
        finally:
            udp.close()
        with pytest.raises(NonLoopbackConnectionError):
            socket.getaddrinfo("login.microsoftonline.com", 443)
        with pytest.raises(NonLoopbackConnectionError):
            socket.gethostbyname("example.com")
    assert caught == [
        "lookup of 192.0.2.1",
        "connect to 192.0.2.1:443",
        "connect to 192.0.2.2:443",
        "send to 192.0.2.3:53",
        "lookup of login.microsoftonline.com",
        "lookup of example.com",
    ]
    assert NETWORK_GUARD.violations == []


def test_loopback_and_local_sockets_pass(server: AzureOpenAIStandIn) -> None:
    assert requests.get(f"{server.base_url}/echo", timeout=5).status_code == 401
    assert requests.get(f"http://localhost:{server.port}/echo", timeout=5).status_code == 401
    left, right = socket.socketpair()
    left.close()
    right.close()
    assert NETWORK_GUARD.violations == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("foo.localhost", False),  # many resolvers send these to DNS
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("::ffff:10.0.0.1", False),
        ("example.com", False),
        (None, False),
        (b"127.0.0.1", True),  # socket addresses may come as bytes
        (b"example.com", False),
    ],
)
def test_what_counts_as_loopback(host: object, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_asyncio_connections_are_refused_too() -> None:
    with NETWORK_GUARD.capture() as caught, pytest.raises(NonLoopbackConnectionError):
        await asyncio.open_connection("192.0.2.7", 443)
    assert caught == ["connect to 192.0.2.7:443"]


def test_a_refusal_the_code_swallowed_still_fails_the_test(pytester: pytest.Pytester) -> None:
    """The suite's hooks fail the test even when the client caught the error."""
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_leak="""
        import socket

        def test_swallows():
            try:
                socket.create_connection(("192.0.2.9", 80), timeout=1)
            except OSError:
                pass

        def test_stays_home():
            assert True
        """
    )
    result = _inner_session(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*left the machine during the test: lookup of 192.0.2.9*"])


def test_default_credential_without_stand_ins_would_probe_imds_and_is_stopped() -> None:
    """With no identity settings, DefaultAzureCredential probes IMDS at 169.254.169.254."""
    import azure.identity
    from azure.core.exceptions import ClientAuthenticationError

    with patched_environ(), NETWORK_GUARD.capture() as caught:
        credential = azure.identity.DefaultAzureCredential(**IN_PROCESS_ONLY)
        with pytest.raises(ClientAuthenticationError):
            credential.get_token(SCOPE)
    assert caught, "DefaultAzureCredential reached nothing the guard saw"
    assert all("169.254.169.254" in what for what in caught), caught


PROBE = textwrap.dedent(
    """
    import azure.identity
    from azure_ad_token_auth.testing import NetworkGuard, patched_environ

    with NetworkGuard() as guard, patched_environ():
        try:
            azure.identity.DefaultAzureCredential(**{kwargs!r}).get_token({scope!r})
        except Exception as error:
            print("credential:", type(error).__name__)
    print("refused:", guard.violations)
    import socket  # a loopback connect the trace must show, or it traced nothing
    with socket.socket() as probe:
        probe.connect_ex(("127.0.0.1", 9))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="strace and unshare are Linux tools")
def test_the_imds_probe_makes_no_connect_system_call(tmp_path: Path) -> None:
    """strace shows no connect() to 169.254.169.254; where possible, in a namespace with no route out."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    trace = tmp_path / "strace.txt"
    command = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,sendto", "-o", str(trace)]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-n", *command]  # even a bug could not reach anything from here
    script = PROBE.format(kwargs=IN_PROCESS_ONLY, scope=SCOPE)
    result = subprocess.run(
        [*command, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC},
    )
    if "PTRACE_TRACEME" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    assert "credential: ClientAuthenticationError" in result.stdout
    assert "169.254.169.254" in result.stdout  # the guard refused the probe...
    calls = trace.read_text().splitlines()
    assert any("connect(" in line and "127.0.0.1" in line for line in calls), "strace traced nothing"
    assert not [line for line in calls if "169.254.169.254" in line]  # ...and no system call carried it
    inet = [line for line in calls if "AF_INET" in line]
    assert all("127.0.0.1" in line or "::1" in line for line in inet), inet


def test_msal_instance_discovery_for_a_loopback_authority_is_caught() -> None:
    """Without `disable_instance_discovery=True`, MSAL asks login.microsoftonline.com about the stand-in."""
    pytest.importorskip("trustme")
    import azure.identity
    from azure.core.exceptions import ClientAuthenticationError

    from azure_ad_token_auth.testing import EntraIdStandIn

    with EntraIdStandIn() as entra, NETWORK_GUARD.capture() as caught:
        options = {"authority": entra.authority, "connection_verify": entra.ca_path, "retry_total": 0}
        credential = azure.identity.ClientSecretCredential(
            entra.tenant, entra.client_id, entra.client_secret, **options
        )
        with pytest.raises(ClientAuthenticationError):
            credential.get_token(SCOPE)
        assert (entra.discoveries, entra.calls) == (0, 0)
        # The same credential with discovery off stays on the machine and gets its token.
        credential = azure.identity.ClientSecretCredential(
            entra.tenant, entra.client_id, entra.client_secret, disable_instance_discovery=True, **options
        )
        assert credential.get_token(SCOPE).token
    assert caught == ["lookup of login.microsoftonline.com"]


def test_reverse_lookups_beyond_loopback_are_refused() -> None:
    """gethostbyaddr / getnameinfo (socket.getfqdn, aiohttp's resolver) ask the DNS
    resolver too. The audit events are raised by hand first, so that a guard that let
    them through fails here without a lookup ever reaching the resolver."""
    with NETWORK_GUARD.capture() as caught:
        with pytest.raises(NonLoopbackConnectionError):
            sys.audit("socket.gethostbyaddr", "192.0.2.7")
        with pytest.raises(NonLoopbackConnectionError):
            sys.audit("socket.getnameinfo", ("192.0.2.8", 443))
        # Refused before the system call, so the real calls are safe to make now.
        with pytest.raises(NonLoopbackConnectionError):
            socket.gethostbyaddr("192.0.2.9")
        with pytest.raises(NonLoopbackConnectionError):
            socket.getnameinfo(("192.0.2.10", 443), 0)
        assert socket.gethostbyaddr("127.0.0.1")[2] == ["127.0.0.1"]
        assert socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST)[0] == "127.0.0.1"
    assert caught == [f"lookup of 192.0.2.{n}" for n in (7, 8, 9, 10)]


# A child's attempt to reach TEST-NET 192.0.2.1. The audit event is raised by hand first:
# only a guarded child goes on to the real connect (refused before the system call), so
# an unguarded child says so and never puts a packet on the wire.
CHILD_CONNECT = textwrap.dedent(
    """
    import socket, sys

    def reach_out():
        with socket.socket() as sock:
            try:
                sys.audit("socket.connect", sock, ("192.0.2.1", 443))
            except OSError:
                try:
                    sock.connect(("192.0.2.1", 443))
                except OSError as error:  # swallowed, as clients do
                    return type(error).__name__
            return "unguarded"
    """
)
exec(CHILD_CONNECT)


def _reach_out_in_a_child(method: str, pipe: Any) -> None:
    pipe.send(reach_out())  # type: ignore[name-defined]  # noqa: F821 - defined by exec above


def _child_says(method: str) -> str:
    if method == "subprocess":
        done = subprocess.run(
            [sys.executable, "-c", CHILD_CONNECT + "print(reach_out())"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
    context = multiprocessing.get_context(method)
    parent, child = context.Pipe()
    process = context.Process(target=_reach_out_in_a_child, args=(method, child))  # type: ignore[attr-defined]
    process.start()
    try:
        assert parent.poll(60), "the child did not answer"
        return str(parent.recv())
    finally:
        process.join(30)


@pytest.mark.parametrize("method", ["subprocess", "spawn", "fork"])
def test_child_processes_are_guarded_and_their_refusals_reach_the_parent(method: str) -> None:
    if method not in ("subprocess", *multiprocessing.get_all_start_methods()):
        pytest.skip(f"no {method} here")
    assert NETWORK_GUARD.take_violations() == []
    assert _child_says(method) == "NonLoopbackConnectionError"
    reported = NETWORK_GUARD.take_violations()  # taken here, or this test would fail
    # Twice: the audit event raised by hand, then the real connect, refused alike.
    assert len(reported) == 2 and len(set(reported)) == 1, reported
    assert reported[0].startswith("connect to 192.0.2.1:443 (in child process "), reported
    assert str(os.getpid()) not in reported[0]


def test_a_refusal_in_a_child_fails_the_test_that_started_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_child_leak=f"""
        import subprocess, sys

        CHILD = {CHILD_CONNECT + "print(reach_out())"!r}

        def test_starts_a_child_that_reaches_out():
            done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
            assert done.stdout.strip() == "NonLoopbackConnectionError"

        def test_stays_home():
            assert True
        """
    )
    result = _inner_session(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*left the machine during the test: connect to 192.0.2.1:443 (in child process *"])
    assert NETWORK_GUARD.take_violations() == []  # the inner session read its children's report


def test_the_suite_starts_children_with_the_guard_cheaply() -> None:
    """The bootstrap loads the guard module alone, not the package (a second or so a child),
    and a test that sets `PYTHONPATH` for its child keeps it with `child_pythonpath`."""
    code = (
        "import os, sys; bootstrap = sys.modules['sitecustomize'];"
        "print(os.path.dirname(bootstrap.__file__) == os.environ['BOOTSTRAP'], hasattr(bootstrap, '_guard'),"
        " 'azure_ad_token_auth' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": child_pythonpath(SRC), "BOOTSTRAP": CHILD_BOOTSTRAP},
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "True True False\n", "")


def _inner_session(pytester: pytest.Pytester) -> pytest.RunResult:
    """Run the files `pytester` holds as a session of their own, under its own guard."""
    NETWORK_GUARD.uninstall()  # the inner session installs its own
    try:
        return pytester.runpytest_inprocess("-p", "no:cacheprovider")
    finally:
        NETWORK_GUARD.install()


def test_one_guard_at_a_time_and_uninstalling_an_idle_guard_does_nothing() -> None:
    other = NetworkGuard()
    with pytest.raises(RuntimeError, match="already installed"):
        other.install()  # the suite's guard is on
    other.uninstall()  # never installed: a no-op that must not switch the suite's guard off
    assert NetworkGuard._active is NETWORK_GUARD
    assert other.take_violations() == []  # no report file: nothing from children either
