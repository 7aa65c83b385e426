"""A fake `az` executable for azure-identity's `AzureCliCredential`, counting its runs.

The executable is a tiny script that forwards its arguments to a loopback service in
this process and prints what it answers, so tokens come from a `TokenRegistry` and
expiry follows this process's clock (time-machine included). Put `bin_dir` first on
`PATH` (`env()` / `patched_env()`) and the real `AzureCliCredential` runs it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import weakref
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from ._environ import patched_environ
from ._http import _FaultQueue, _LoopbackService, _Request, _Response
from ._token_registry import DEFAULT_TENANT, TokenRegistry

__all__ = ["FakeAzureCli"]

_NOT_LOGGED_IN = "ERROR: Please run 'az login' to setup account.\n"

_SCRIPT = """\
import json, sys, urllib.request
request = urllib.request.Request({url!r}, data=json.dumps(sys.argv[1:]).encode(), method="POST")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
try:
    with opener.open(request, timeout=60) as response:
        answer = json.load(response)
except Exception as error:
    sys.stderr.write("ERROR: the fake az could not reach its stand-in: %s\\n" % error)
    sys.exit(1)
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.exit(answer["exit"])
"""

_F = TypeVar("_F", bound="FakeAzureCli")


class FakeAzureCli(_LoopbackService):
    """`az account get-access-token` on this machine, issuing `registry` tokens of `lifetime` seconds.

    `runs` counts every run of the executable, `calls` the tokens it printed,
    `invocations` the argument lists. `logged_in=False` answers as `az` does before
    `az login`, so `AzureCliCredential` reports itself unavailable. POSIX only.
    """

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        lifetime: float = 3600.0,
        tenant: str = DEFAULT_TENANT,
        logged_in: bool = True,
    ) -> None:
        if os.name != "posix":
            raise NotImplementedError("FakeAzureCli writes a POSIX shell script; on Windows azure-identity runs az.cmd")
        super().__init__()
        self.registry = registry if registry is not None else TokenRegistry()
        self.tenant = tenant
        self.logged_in = logged_in
        self._lifetime = lifetime
        self._invocations: list[list[str]] = []
        self._calls = 0
        self._faults = _FaultQueue()
        self._dir = Path(tempfile.mkdtemp(prefix="fake-az-"))
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._write_lock = threading.Lock()

    @property
    def bin_dir(self) -> str:
        """The directory holding `az`: put it first on `PATH`."""
        return str(self._dir)

    def start(self: _F) -> _F:
        """Start the service and (re)write `az` to reach it."""
        super().start()
        with self._write_lock:
            script = self._dir / "az.py"
            script.write_text(_SCRIPT.format(url=f"{self.base_url}/az"), encoding="utf-8")
            az = self._dir / "az"
            # A shell wrapper, not a shebang: an interpreter path may be too long or hold spaces.
            az.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "{script}" "$@"\n', encoding="utf-8")
            az.chmod(az.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return self

    def env(self) -> dict[str, str]:
        """`PATH` with `bin_dir` first (a running service is needed for `az` to answer)."""
        return {"PATH": self.bin_dir + os.pathsep + os.environ.get("PATH", os.defpath)}

    def patched_env(self) -> AbstractContextManager[dict[str, str]]:
        """`env()` in `os.environ` for a `with` block (see `patched_environ`)."""
        return patched_environ(self.env())

    @property
    def runs(self) -> int:
        """How many times `az` ran."""
        with self._lock:
            return len(self._invocations)

    @property
    def calls(self) -> int:
        """How many tokens `az` printed."""
        with self._lock:
            return self._calls

    @property
    def invocations(self) -> list[list[str]]:
        """The argument lists `az` ran with, oldest first."""
        with self._lock:
            return [list(args) for args in self._invocations]

    def set_lifetime(self, seconds: float) -> None:
        """Lifetime of tokens printed from now on."""
        with self._lock:
            self._lifetime = seconds

    def fail_next(self, count: int = 1, stderr: str = "ERROR: injected failure\n", exit_code: int = 1) -> None:
        """Make the next ``count`` runs print ``stderr`` and exit with ``exit_code``."""
        self._faults.push(count, _answer("", stderr, exit_code))

    def _handle(self, request: _Request) -> _Response:
        if request.method != "POST" or request.path != "/az":
            return _Response.of_json(404, {"error": "not found"})
        args = json.loads(request.body)
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            return _Response.of_json(400, {"error": "arguments must be a list of strings"})
        with self._lock:
            self._invocations.append(args)
        return self._faults.take() or self._run(args)

    def _run(self, args: list[str]) -> _Response:
        if args[:2] != ["account", "get-access-token"]:
            return _answer("", f"ERROR: the fake az knows only 'account get-access-token', not {args[:2]}\n", 2)
        if not self.logged_in:
            return _answer("", _NOT_LOGGED_IN, 1)
        options = _options(args[2:])
        resource = options.get("--resource") or (options.get("--scope") or "").removesuffix("/.default")
        if not resource:
            return _answer("", "ERROR: --resource or --scope is required\n", 2)
        with self._lock:
            lifetime = self._lifetime
        tenant = options.get("--tenant") or self.tenant
        token, expires_on = self.registry.issue(lifetime, audience=resource, tenant=tenant)
        output = {
            "accessToken": token,
            "expiresOn": datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "expires_on": expires_on,
            "subscription": "00000000-0000-0000-0000-0000000000d0",
            "tenant": tenant,
            "tokenType": "Bearer",
        }
        with self._lock:
            self._calls += 1
        return _answer(json.dumps(output, indent=2) + "\n", "", 0)


def _options(args: list[str]) -> Mapping[str, str]:
    return {name: value for name, value in itertools.pairwise(args) if name.startswith("--")}


def _answer(stdout: str, stderr: str, exit_code: int) -> _Response:
    return _Response.of_json(200, {"stdout": stdout, "stderr": stderr, "exit": exit_code})
