"""Managed-identity stand-ins: the App Service endpoint and the VM's IMDS, on loopback.

- `ManagedIdentityEndpoint`: App Service / Functions (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`).
- `ImdsEndpoint`: the instance metadata service of VMs and scale sets, which azure-identity
  asks at `AZURE_POD_IDENTITY_AUTHORITY_HOST` instead of 169.254.169.254. Its tokens live
  24 h by default, so MSAL sets `refresh_on` at half-life, as on a real VM.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from typing import ClassVar, TypedDict

from ._environ import patched_environ
from ._http import _JSON, _FaultQueue, _LoopbackService, _Request, _Response
from ._token_registry import DEFAULT_APP_ID, TokenRegistry

__all__ = ["ImdsEndpoint", "ManagedIdentityEndpoint", "TokenRequestRecord"]


class TokenRequestRecord(TypedDict):
    """One request seen by a managed-identity stand-in."""

    method: str
    path: str
    query: dict[str, str]
    time: float
    status: int


class _IdentityEndpoint(_LoopbackService):
    """What both managed-identity stand-ins do: issue, count, record, delay, fail on demand."""

    PATH: ClassVar[str]

    def __init__(
        self,
        *,
        registry: TokenRegistry | None,
        lifetime: float,
        refresh_in: float | None,
        delay: float,
    ) -> None:
        super().__init__()
        self.registry = registry if registry is not None else TokenRegistry()
        self._lifetime = lifetime
        self._refresh_in = refresh_in
        self._delay = delay
        self._calls = 0
        self._requests: list[TokenRequestRecord] = []
        self._faults = _FaultQueue()
        self._last_resource: str | None = None
        self._open = threading.Event()
        self._open.set()

    @property
    def url(self) -> str:
        """The token endpoint's URL."""
        return self.base_url + self.PATH

    def env(self) -> dict[str, str]:
        """The environment variables that point azure-identity here."""
        raise NotImplementedError

    def patched_env(self) -> AbstractContextManager[dict[str, str]]:
        """Point `os.environ` at this endpoint for a `with` block (see `patched_environ`)."""
        return patched_environ(self.env())

    @property
    def calls(self) -> int:
        """How many requests were answered with a token."""
        with self._lock:
            return self._calls

    @property
    def requests(self) -> list[TokenRequestRecord]:
        """A snapshot of every request seen, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_resource(self) -> str | None:
        """The ``resource`` of the last token handed out."""
        with self._lock:
            return self._last_resource

    def fail_next(self, count: int = 1, status: int = 500, body: str | None = None) -> None:
        """Answer the next ``count`` token requests with ``status`` and ``body`` (JSON error by default)."""
        if body is None:
            body = json.dumps({"statusCode": status, "message": "Injected failure (loopback)"})
        content_type = _JSON
        try:
            json.loads(body)
        except ValueError:
            content_type = "text/plain; charset=utf-8"
        self._faults.push(count, _Response(status, body.encode("utf-8"), content_type))

    def set_delay(self, seconds: float) -> None:
        """Sleep this long before answering each request."""
        with self._lock:
            self._delay = seconds

    def set_lifetime(self, seconds: float) -> None:
        """Lifetime of tokens issued from now on."""
        with self._lock:
            self._lifetime = seconds

    def pause(self) -> None:
        """Hold every request from now on unanswered until `resume()` (at most 60 s)."""
        self._open.clear()

    def resume(self) -> None:
        """Answer the requests `pause()` held, and all later ones."""
        self._open.set()

    def _handle(self, request: _Request) -> _Response:
        self._open.wait(timeout=60)
        with self._lock:
            delay = self._delay
        if delay > 0:
            time.sleep(delay)
        response = self._answer(request)
        with self._lock:
            self._requests.append(
                TokenRequestRecord(
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    time=time.time(),
                    status=response.status,
                )
            )
        return response

    def _answer(self, request: _Request) -> _Response:
        if request.path != self.PATH:
            return _Response.of_json(404, {"statusCode": 404, "message": "Not found"})
        fault = self._faults.take()
        if fault is not None:
            return fault
        if request.method != "GET":
            return _Response.of_json(405, {"statusCode": 405, "message": "Method not allowed"})
        refused = self._refuse(request)
        if refused is not None:
            return refused
        resource = request.query.get("resource")
        if not resource:
            return _Response.of_json(400, {"statusCode": 400, "message": "The 'resource' parameter is required"})
        with self._lock:
            lifetime, refresh_in = self._lifetime, self._refresh_in
        token, expires_on = self.registry.issue(lifetime, audience=resource)
        payload = self._payload(token, expires_on, resource)
        if refresh_in is not None:
            payload["refresh_in"] = int(refresh_in)
        with self._lock:
            self._calls += 1
            self._last_resource = resource
        return _Response.of_json(200, payload)

    def _refuse(self, request: _Request) -> _Response | None:
        raise NotImplementedError

    def _payload(self, token: str, expires_on: int, resource: str) -> dict[str, object]:
        raise NotImplementedError


class ManagedIdentityEndpoint(_IdentityEndpoint):
    """Stand-in for the App Service managed-identity endpoint (``/msi/token``)."""

    PATH: ClassVar[str] = "/msi/token"

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        lifetime: float = 3600.0,
        refresh_in: float | None = None,
        secret: str = "loopback-identity-header",  # noqa: S107 - a fixture value
        delay: float = 0.0,
    ) -> None:
        super().__init__(registry=registry, lifetime=lifetime, refresh_in=refresh_in, delay=delay)
        self.secret = secret

    def env(self) -> dict[str, str]:
        """`IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, which point azure-identity here."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def _refuse(self, request: _Request) -> _Response | None:
        if request.headers.get("X-IDENTITY-HEADER") != self.secret:
            return _Response.of_json(401, {"statusCode": 401, "message": "Missing or invalid X-IDENTITY-HEADER"})
        return None

    def _payload(self, token: str, expires_on: int, resource: str) -> dict[str, object]:
        return {"access_token": token, "expires_on": str(expires_on), "resource": resource, "token_type": "Bearer"}


class ImdsEndpoint(_IdentityEndpoint):
    """Stand-in for IMDS (``/metadata/identity/oauth2/token``), as VMs and scale sets serve it.

    Tokens live 24 h unless `lifetime` says otherwise; MSAL renews a token of 2 h or
    more at half-life (`refresh_on`). With `assigned=False` it answers 400 "no identity
    assigned", as a VM without a managed identity does, so `DefaultAzureCredential`
    moves on to its next credential without probing anything off the machine.
    """

    PATH: ClassVar[str] = "/metadata/identity/oauth2/token"

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        lifetime: float = 86400.0,
        refresh_in: float | None = None,
        delay: float = 0.0,
        assigned: bool = True,
    ) -> None:
        super().__init__(registry=registry, lifetime=lifetime, refresh_in=refresh_in, delay=delay)
        self.assigned = assigned

    def env(self) -> dict[str, str]:
        """`AZURE_POD_IDENTITY_AUTHORITY_HOST`, which points azure-identity's IMDS requests here."""
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.base_url}

    def _refuse(self, request: _Request) -> _Response | None:
        if request.headers.get("Metadata", "").lower() != "true":
            return _Response.of_json(
                400, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
            )
        if not self.assigned:
            return _Response.of_json(400, {"error": "invalid_request", "error_description": "Identity not found"})
        return None

    def _payload(self, token: str, expires_on: int, resource: str) -> dict[str, object]:
        now = int(time.time())
        expires_in = str(max(expires_on - now, 0))
        return {
            "access_token": token,
            "client_id": DEFAULT_APP_ID,
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "expires_on": str(expires_on),
            "not_before": str(now),
            "resource": resource,
            "token_type": "Bearer",
        }
