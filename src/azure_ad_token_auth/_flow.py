"""The 401 flow, written once for every adapter (sans-I/O).

As in httpx's own `_auth.py`, the logic is a generator that yields what it needs and is
sent back the answer; it does no I/O. A request has gone out with our token
(`_drivers.attach`, the per-request path) and a response came back: `challenge_flow`
decides what follows, and the drivers of `_drivers` (one sync, one async, for every
adapter) answer its steps:

- `Invalidate(token, claims)`: a service refused `token` (with a CAE challenge's `claims`):
  send back `TokenCache.invalidate(token, claims)`, whether to resend (`await
  TokenCache.invalidate_async(...)` in async code: with `shared_cache` the rejection is
  written to a file, off the event loop).
- `REPLAYABLE`: send back whether the request's body can be sent again.
- `TOKEN`: send back an `Authorization` value, `"Bearer <token>"` (`TokenCache.get_header()`
  or `await TokenCache.get_header_async()`). If that raises, throw the error into the
  flow (`flow.throw`): it comes back out, chained to the 401 that started the renewal
  when there was one; the driver releases a 401 it holds before the error goes on.
- the request itself: send it again (the driver releases the 401 and rewinds the body
  first); what comes back goes to the caller.

The rules, each in one place: which 401 is ours (the request that got it carries exactly
the header we attached), drop the rejected token with the claims of a CAE challenge (the
`Invalidate` step), resend once and only if the body can be replayed and the credential
handed back a different token. Where the token may go is `HostPolicy`'s; that a request it
may not go to leaves with no `Authorization` or `api-key` at all, `drop_authorization`'s.
"""

from __future__ import annotations

from collections.abc import Generator, MutableMapping
from typing import Any, NamedTuple, Protocol

from ._errors import TokenRejectedError
from ._policy import MAX_CHALLENGE_LENGTH, claims_from_challenge

__all__ = [
    "REPLAYABLE",
    "TOKEN",
    "Flow",
    "Invalidate",
    "Response",
    "Step",
    "challenge_flow",
    "drop_authorization",
    "rejects",
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


# Where a token may ride: `Authorization`, and Azure's `api-key`, which openai's Azure
# clients fill from a callable `api_key` (a token provider passed there) on every request.
_CREDENTIAL_HEADERS = ("Authorization", "api-key")


def drop_authorization(headers: MutableMapping[str, str]) -> None:
    """Remove every `Authorization` and `api-key` header from a request that is not to get the token.

    Whoever set them (openai copies the token its provider, or a callable `api_key`,
    returned into every request, whatever the URL), a host outside `allowed_hosts` gets
    no token through an adapter: the adapter cannot tell ours from another, so it lets
    none through.
    """
    for name in _CREDENTIAL_HEADERS:
        if name in headers:  # case-insensitive in every client's header mapping
            del headers[name]  # all of them (multidict, httpx.Headers)


def rejects(response: Response, attached: str | None) -> bool:
    """Whether `response` is a 401 to the header we attached (`attached`, None if none).

    Not a 401 to our header: a redirect to another origin dropped it, or something after
    us replaced it. That host must not make us renew (nor get a token).
    """
    return response.status == 401 and attached is not None and response.sent == attached


def challenge_flow(request: RequestLike, response: Response, attached: str | None) -> Flow:
    """After `response` to a request we attached `attached` to: resend once, or stop."""
    if attached is None or not rejects(response, attached):
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


def _shown(challenge: str, attached: str) -> str:
    """The challenge for an error message: bounded, and never the token (were it echoed)."""
    token = attached[7:]
    # Hidden before the cut: cutting first could leave all of an echoed token but its tail.
    text = challenge.replace(token, "<token hidden>") if token else challenge
    return text[:MAX_CHALLENGE_LENGTH]
