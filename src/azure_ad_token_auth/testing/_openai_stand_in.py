"""A stand-in for an Azure OpenAI resource on loopback (https by default): completion routes that
check every bearer token."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from email.message import Message
from typing import Final
from urllib.parse import unquote

from . import _tls
from ._environ import environ_updated
from ._http import _FaultQueue, _LoopbackService, _Request, _Response
from ._token_registry import TokenRegistry, _b64url, fingerprint

__all__ = ["AzureOpenAIStandIn", "RecordedRequest"]

_MSG_MISSING: Final = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)
_MSG_INVALID: Final = "Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired."
_MSG_CAE: Final = (
    "Continuous access evaluation resulted in challenge with result: InteractionRequired "
    "and code: TokenIssuedBeforeRevocationTimestamp"
)
_TOKEN_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "missing": "No access token was presented",
    "expired": "The access token has expired",
    "unknown": "The access token was not issued by this authority",
    "revoked": "The access token has been revoked",
}
# Headers whose values are credentials; a record never keeps them.
_REDACTED_HEADERS: Final = frozenset({"authorization", "api-key", "ocp-apim-subscription-key", "x-identity-header"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request seen by :class:`AzureOpenAIStandIn`; never holds a token."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    token_status: str
    token_fingerprint: str | None
    body: bytes
    status: int
    time: float


def _azure_error(status: int, message: str) -> dict[str, object]:
    return {"error": {"code": str(status), "message": message}}


def _invalid_token_header(description: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'}


class AzureOpenAIStandIn(_LoopbackService):
    """Stand-in for an Azure OpenAI resource that checks bearer tokens.

    Routes (POST): ``/openai/deployments/{name}/completions`` and
    ``.../chat/completions`` (need ``api-version``), ``/openai/v1/completions``
    and ``/openai/v1/chat/completions`` (deployment from the body's ``model``),
    plus ``/echo`` (GET, POST, PUT) which describes the request it got.

    It serves https (``base_url`` is ``https://127.0.0.1:PORT``), as Azure does, so the
    adapters and providers send it tokens with no `allow_http`: its certificate comes
    from a throwaway CA (needs `trustme`: the ``[testing]`` extra) that clients trust
    through `env()` / `patched_env()` (httpx, httpx2, openai, requests) or
    `ssl_context()` (aiohttp's ``ssl=``, which reads the environment only when it is
    imported). ``tls=False`` serves plain http, for tests that mean it: the clients
    then need ``allow_http=True``.
    """

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        completion: str = " was very attentive and friendly.",
        require_token: bool = True,
        tls: bool = True,
    ) -> None:
        super().__init__(tls=tls)
        self.registry = registry if registry is not None else TokenRegistry()
        self.completion = completion
        self.require_token = require_token
        self._requests: list[RecordedRequest] = []
        self._faults = _FaultQueue()
        self._ids = 0

    # -- pointing clients here ---------------------------------------------------

    def env(self) -> dict[str, str]:
        """``AZURE_OPENAI_ENDPOINT`` (what openai >= 1 reads without ``azure_endpoint=``) and,
        when serving TLS, ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` naming `ca_path`."""
        return {"AZURE_OPENAI_ENDPOINT": self.base_url, **(_tls.trust_env() if self.tls else {})}

    def patched_env(self) -> AbstractContextManager[None]:
        """`env()` in `os.environ` for a ``with`` block; only those variables are touched, and restored."""
        return environ_updated(self.env())

    # -- inspection ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request seen, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        """How many requests have been seen."""
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and drop pending injected faults."""
        with self._lock:
            self._requests.clear()
        self._faults.clear()

    # -- fault injection (queued in call order) --------------------------------

    def _queue(self, count: int, response: _Response) -> None:
        self._faults.push(count, response)

    def fail_next(
        self,
        count: int = 1,
        status: int = 401,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, object] | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status``, whatever the token.

        ``body`` defaults to an Azure-style error; ``headers`` default to an
        ``invalid_token`` challenge for 401 and nothing otherwise.
        """
        if headers is None:
            headers = _invalid_token_header("Injected failure") if status == 401 else {}
        if body is None:
            message = _MSG_INVALID if status == 401 else "Injected failure (loopback)"
            body = _azure_error(status, message)
        self._queue(count, _Response.of_json(status, dict(body), headers))

    def challenge_next(self, claims: str, count: int = 1) -> None:
        """Answer the next ``count`` requests with a CAE ``insufficient_claims`` 401.

        ``claims`` is the decoded JSON text; it is sent base64url-encoded
        without padding, as Azure does.
        """
        header = (
            'Bearer realm="", '
            'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
            f'error="insufficient_claims", claims="{_b64url(claims.encode("utf-8"))}"'
        )
        self._queue(
            count,
            _Response.of_json(401, _azure_error(401, _MSG_CAE), {"WWW-Authenticate": header}),
        )

    def redirect_next(self, location: str, status: int = 307, count: int = 1) -> None:
        """Answer the next ``count`` requests with a redirect to ``location``."""
        self._queue(count, _Response(status, b"", None, {"Location": location}))

    # -- request handling ------------------------------------------------------

    def _handle(self, request: _Request) -> _Response:
        token = self._bearer(request.headers)
        token_status: str = "missing" if token is None else self.registry.check(token)
        fault = self._faults.take()
        response = fault if fault is not None else self._route(request, token_status)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            name = name.lower()
            if name in _REDACTED_HEADERS:
                value = "<redacted>"
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            token_status=token_status,
            token_fingerprint=None if token is None else fingerprint(token),
            body=request.body,
            status=response.status,
            time=time.time(),
        )
        with self._lock:
            self._requests.append(record)
        return response

    @staticmethod
    def _bearer(headers: Message) -> str | None:
        value = headers.get("Authorization")
        if not value:
            return None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def _unauthorized(self, status: str) -> _Response | None:
        if not self.require_token or status == "valid":
            return None
        message = _MSG_MISSING if status == "missing" else _MSG_INVALID
        return _Response.of_json(401, _azure_error(401, message), _invalid_token_header(_TOKEN_DESCRIPTIONS[status]))

    def _route(self, request: _Request, status: str) -> _Response:
        not_found = _Response.of_json(404, _azure_error(404, "Resource not found"))
        parts = request.path.strip("/").split("/")
        if parts == ["echo"]:
            if request.method not in ("GET", "POST", "PUT"):
                return _Response.of_json(405, _azure_error(405, "Method not allowed"))
            return self._unauthorized(status) or _Response.of_json(
                200,
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "body_length": len(request.body),
                    "body_sha256": hashlib.sha256(request.body).hexdigest(),
                    "token_status": status,
                },
            )
        if len(parts) >= 4 and parts[:2] == ["openai", "deployments"] and parts[2]:
            if "api-version" not in request.query:
                return not_found
            deployment: str | None = unquote(parts[2])
            kind = "/".join(parts[3:])
        elif len(parts) >= 3 and parts[:2] == ["openai", "v1"]:
            deployment, kind = None, "/".join(parts[2:])
        else:
            return not_found
        if kind not in ("completions", "chat/completions"):
            return not_found
        if request.method != "POST":
            return _Response.of_json(405, _azure_error(405, "Method not allowed"))
        refused = self._unauthorized(status)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _Response.of_json(400, _azure_error(400, "Request body is not valid JSON"))
        if deployment is None and not (isinstance(body, dict) and body.get("model")):
            return _Response.of_json(400, _azure_error(400, "'model' is required"))
        return _Response.of_json(200, self._completion(chat=kind == "chat/completions"))

    def _completion(self, *, chat: bool) -> dict[str, object]:
        with self._lock:
            self._ids += 1
            number = self._ids
        usage = {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15}
        if chat:
            return {
                "id": f"chatcmpl-loopback-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self.completion},
                    }
                ],
                "usage": usage,
            }
        return {
            "id": f"cmpl-loopback-{number}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": "gpt-35-turbo-instruct",
            "choices": [{"text": self.completion, "index": 0, "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }
