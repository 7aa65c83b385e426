"""A stand-in for Azure Blob Storage over TLS on loopback, for real Azure SDK clients.

`azure-storage-blob`'s `BlobServiceClient` (sync and `aio`) accepts an IP-style account
URL, `https://127.0.0.1:PORT/<account>` (as it does for Azurite), and asks its credential
for `https://storage.azure.com/.default` through azure-core's bearer token policy. The
stand-in serves the few operations an example or a test needs (upload, download,
properties, delete) and checks every bearer token against a `TokenRegistry`, as Storage
checks Entra ID tokens: no token, an invalid one, or one issued for another audience than
Storage's gets Storage's 401 challenge; a revoked one a CAE `insufficient_claims`
challenge (azure-core's policy answers it).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import Mapping
from email.message import Message
from typing import Final

from ._http import _FaultQueue, _LoopbackService, _Request, _Response
from ._openai_stand_in import RecordedRequest
from ._token_registry import DEFAULT_TENANT, TokenRegistry, _b64url, fingerprint

__all__ = ["BlobStorageStandIn"]

_XML: Final = "application/xml"
_VERSION: Final = "2025-01-05"
# Headers whose values are credentials; a record never keeps them.
_REDACTED: Final = frozenset({"authorization", "x-ms-authorization-auxiliary"})
_MESSAGES: Final[Mapping[str, tuple[str, str]]] = {
    "missing": ("NoAuthenticationInformation", "Server failed to authenticate the request."),
    "expired": ("InvalidAuthenticationInfo", "Lifetime validation failed. The token is expired."),
    "unknown": ("InvalidAuthenticationInfo", "Server failed to authenticate the request."),
    "wrong-audience": ("InvalidAuthenticationInfo", "Audience validation failed. Audience did not match."),
}
# The audience Storage accepts (`aud`, with or without the trailing slash v1 tokens carry).
STORAGE_AUDIENCE: Final = "https://storage.azure.com"


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> _Response:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return _Response(status, body.encode(), _XML, {"x-ms-error-code": code, **(headers or {})})


class BlobStorageStandIn(_LoopbackService):
    """Azure Blob Storage (`https://127.0.0.1:PORT/<account>`) that checks every bearer token.

    Point a client at `account_url` and have it trust `ca_path`:
    `BlobServiceClient(stand_in.account_url, credential=..., connection_verify=stand_in.ca_path)`
    (or `REQUESTS_CA_BUNDLE`). Blobs live in memory: `PUT` uploads a block blob, `GET`
    downloads it (ranges included), `HEAD` reads its properties, `DELETE` removes it.

    Tokens come from `registry` (share it with `ManagedIdentityEndpoint`,
    `EntraIdStandIn` or `FakeCredential(registry=...)`); a valid one must also be issued
    for Storage (`aud` `https://storage.azure.com`, the scope `https://storage.azure.com/.default`),
    else it gets Storage's 401 (`InvalidAuthenticationInfo`, recorded as `"wrong-audience"`).
    `challenge_next(claims)` answers the next requests with a CAE claims challenge;
    `requests` records every request, without its token.
    """

    def __init__(self, *, registry: TokenRegistry | None = None, account: str = "devstoreaccount1") -> None:
        super().__init__(tls=True)  # the kit's one throwaway CA (`ca_path`), as every https stand-in
        self.registry = registry if registry is not None else TokenRegistry()
        self.account = account
        self.tenant = DEFAULT_TENANT
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._requests: list[RecordedRequest] = []
        self._faults = _FaultQueue()

    @property
    def account_url(self) -> str:
        """``https://127.0.0.1:PORT/<account>``: the `account_url` of a `BlobServiceClient`."""
        return f"{self.base_url}/{self.account}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request seen, oldest first."""
        with self._lock:
            return list(self._requests)

    def blob(self, container: str, name: str) -> bytes | None:
        """The content of a stored blob, or None."""
        with self._lock:
            stored = self._blobs.get(f"{container}/{name}")
        return None if stored is None else stored[0]

    def challenge_next(self, claims: str, count: int = 1) -> None:
        """Answer the next `count` requests with a CAE `insufficient_claims` 401 (`claims`:
        the decoded JSON, sent base64url-encoded without padding, as Azure does)."""
        self._faults.push(count, self._claims_challenge(claims))

    def _claims_challenge(self, claims: str) -> _Response:
        header = (
            f'Bearer realm="", authorization_uri="https://login.microsoftonline.com/{self.tenant}/oauth2/authorize", '
            f'error="insufficient_claims", claims="{_b64url(claims.encode())}"'
        )
        return _error(401, "InvalidAuthenticationInfo", "Token claims insufficient", {"WWW-Authenticate": header})

    # -- request handling ------------------------------------------------------

    def _handle(self, request: _Request) -> _Response:
        token = _bearer(request.headers)
        status = "missing" if token is None else self._judge(token)
        fault = self._faults.take()
        response = fault or self._refusal(status) or self._route(request)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={
                name.lower(): "<redacted>" if name.lower() in _REDACTED else value
                for name, value in request.headers.items()
            },
            token_status=status,
            token_fingerprint=None if token is None else fingerprint(token),
            body=request.body,
            status=response.status,
            time=time.time(),
        )
        with self._lock:
            self._requests.append(record)
        return response

    def _judge(self, token: str) -> str:
        """The registry's verdict, and `"wrong-audience"` for a valid token not issued for Storage."""
        status: str = self.registry.check(token)
        if status == "valid" and str((self.registry.claims(token) or {}).get("aud")).rstrip("/") != STORAGE_AUDIENCE:
            return "wrong-audience"
        return status

    def _refusal(self, status: str) -> _Response | None:
        if status == "valid":
            return None
        if status == "revoked":  # continuous access evaluation: tokens issued before now are refused
            nbf = json.dumps({"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}})
            return self._claims_challenge(nbf)
        code, message = _MESSAGES[status]
        challenge = (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{self.tenant}/oauth2/authorize "
            "resource_id=https://storage.azure.com"
        )
        return _error(401, code, message, {"WWW-Authenticate": challenge})

    def _route(self, request: _Request) -> _Response:
        parts = request.path.strip("/").split("/", 2)
        if len(parts) != 3 or parts[0] != self.account or not all(parts):
            return _error(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        key = f"{parts[1]}/{parts[2]}"
        common = {"x-ms-version": _VERSION, "x-ms-request-id": hashlib.sha256(key.encode()).hexdigest()[:32]}
        if request.method == "PUT":
            etag = f'"0x{hashlib.sha256(request.body).hexdigest()[:16].upper()}"'
            with self._lock:
                self._blobs[key] = (request.body, etag)
            return _Response(201, b"", None, {**common, "ETag": etag, "Last-Modified": _now()})
        with self._lock:
            stored = self._blobs.get(key)
            if request.method == "DELETE" and stored is not None:
                del self._blobs[key]
        if stored is None:
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        if request.method == "DELETE":
            return _Response(202, b"", None, common)
        data, etag = stored
        headers = {**common, "ETag": etag, "Last-Modified": _now(), "x-ms-blob-type": "BlockBlob"}
        if request.method == "HEAD":
            return _Response(200, b"", "application/octet-stream", {**headers, "x-ms-content-length": str(len(data))})
        if request.method != "GET":
            return _error(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")
        first, last = _range(request.headers.get("x-ms-range") or request.headers.get("Range"), len(data))
        if first is None:
            return _Response(200, data, "application/octet-stream", headers)
        part = data[first : last + 1]
        span = f"bytes {first}-{first + len(part) - 1}/{len(data)}" if part else f"bytes */{len(data)}"
        return _Response(206, part, "application/octet-stream", {**headers, "Content-Range": span})


def _bearer(headers: Message) -> str | None:
    scheme, _, token = (headers.get("Authorization") or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _range(value: str | None, size: int) -> tuple[int | None, int]:
    """(first, last) byte of a `bytes=first-last` range, or (None, size - 1) for none."""
    if not value or not value.startswith("bytes="):
        return None, size - 1
    first, _, last = value[6:].partition("-")
    return int(first), min(int(last) if last else size - 1, size - 1)


def _now() -> str:
    return email.utils.formatdate(usegmt=True)
