"""The bearer-token flow, written once for every adapter (sans-I/O).

As in httpx's own `_auth.py`, the logic is a generator that yields what it needs and
is sent back the answer; it does no I/O. The adapters (requests, httpx and httpx2,
sync and async, aiohttp) are thin drivers:

- `TOKEN`: send back an `Authorization` value, `"Bearer <token>"` (`TokenCache.get_header()`
  or `await TokenCache.get_header_async()`). If that raises, throw the error into the
  flow (`flow.throw`, see `send_token`): it comes back out, chained to the 401 that
  started the renewal when there was one; the driver releases a 401 it holds before the
  error goes on.
- `Invalidate(token, claims)`: a service refused `token` (with a CAE challenge's `claims`):
  send back `TokenCache.invalidate(token, claims)`, whether to resend (`await
  TokenCache.invalidate_async(...)` in async code: with `shared_cache` the rejection is
  written to a file, off the event loop).
- `REPLAYABLE`: send back whether the request's body can be sent again.
- the request itself: send it (again, after a 401: the driver releases the 401 and
  rewinds the body first) and send back the response (`Response` fields below).

The rules, each in one place: where the token may go (`HostPolicy.allows_url`), that a
request it may not go to leaves with no `Authorization` at all (`drop_authorization`), which
401 is ours (the request that got it carries exactly the header we attached), drop the
rejected token with the claims of a CAE challenge (the `Invalidate` step), resend once
and only if the body can be replayed and the credential handed back a different token.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, MutableMapping
from typing import Any, NamedTuple, Protocol

from ._errors import TokenRejectedError
from ._policy import MAX_CHALLENGE_LENGTH, HostPolicy, claims_from_challenge

__all__ = [
    "REPLAYABLE",
    "TOKEN",
    "Flow",
    "Invalidate",
    "Response",
    "Step",
    "bearer_flow",
    "challenge_flow",
    "drop_authorization",
    "send_token",
]


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


TOKEN = _Marker("TOKEN")
REPLAYABLE = _Marker("REPLAYABLE")


class Invalidate(NamedTuple):
    """The step asking the driver to report a rejected token (`TokenCache.invalidate`)."""

    token: str
    claims: str | None

    def __repr__(self) -> str:  # never the token, even in a traceback's locals
        return f"Invalidate(claims={self.claims is not None})"


class RequestLike(Protocol):
    @property
    def headers(self) -> MutableMapping[str, str]: ...


class Response(NamedTuple):
    """What the flow reads of a response: status, the `Authorization` the request that
    got it carried (after redirects), and its `WWW-Authenticate` header."""

    status: int
    sent: str | None
    challenge: str | None

    def __repr__(self) -> str:  # never the token, even in a traceback's locals
        return f"Response(status={self.status})"


Step = _Marker | Any
Flow = Generator[Step, Any, None]


def drop_authorization(headers: MutableMapping[str, str]) -> None:
    """Remove every `Authorization` header from a request that is not to get the token.

    Whoever set it (openai copies the token its provider returned into every request,
    whatever the URL), a host outside `allowed_hosts` gets no bearer token through an
    adapter: the adapter cannot tell ours from another, so it lets none through.
    """
    if "Authorization" in headers:  # case-insensitive in every client's header mapping
        del headers["Authorization"]  # all of them (multidict, httpx.Headers)


def bearer_flow(policy: HostPolicy, request: RequestLike, url: str) -> Flow:
    """Attach the token if `policy` allows `url`; on a 401 to it, resend once with a new one.

    Raises `InsecureTransportError` before anything is sent when the token may not go
    to `url` in clear (`HostPolicy.allows_url`). A request to a host outside
    `allowed_hosts` goes without the token, and without any `Authorization` header.
    """
    if not policy.allows_url(url):
        drop_authorization(request.headers)
        yield request
        return
    header: str = yield TOKEN
    request.headers["Authorization"] = header
    response: Response = yield request
    yield from challenge_flow(request, response, header)


def challenge_flow(request: RequestLike, response: Response, attached: str | None) -> Flow:
    """After `response` to a request we attached `attached` to: resend once, or stop."""
    if response.status != 401 or attached is None or response.sent != attached:
        # Not a 401 to our header: a redirect to another origin dropped it, or something
        # after us replaced it. That host must not make us renew (nor get a token).
        return
    claims = claims_from_challenge(response.challenge)
    # Even when the body cannot be replayed the token is dropped, so the caller's next
    # request gets a new one; this request is not resent with a consumed (empty) body.
    if not (yield Invalidate(attached[7:], claims)) or not (yield REPLAYABLE):
        return
    try:
        renewed: str = yield TOKEN
    except Exception as exc:
        if response.challenge is None:
            raise
        # As azure-core: the credential's own error, from the 401 that asked for the renewal.
        raise exc from TokenRejectedError(response.status, _shown(response.challenge, attached))
    if renewed == attached:  # the credential handed back the rejected token: no use resending
        return
    request.headers["Authorization"] = renewed
    yield request  # once: whatever comes back goes to the caller


def send_token(flow: Flow, get_header: Callable[[], str]) -> Step:
    """Answer a `TOKEN` step: send `get_header()`, or throw its error into the flow."""
    try:
        header = get_header()
    except Exception as exc:  # noqa: BLE001 - re-raised by the flow, maybe chained to a 401
        return flow.throw(exc)
    return flow.send(header)


def _shown(challenge: str, attached: str) -> str:
    """The challenge for an error message: bounded, and never the token (were it echoed)."""
    token = attached[7:]
    # Hidden before the cut: cutting first could leave all of an echoed token but its tail.
    text = challenge.replace(token, "<token hidden>") if token else challenge
    return text[:MAX_CHALLENGE_LENGTH]
