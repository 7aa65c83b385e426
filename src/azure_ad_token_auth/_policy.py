"""Where a token may go, and what a 401 challenge asks for.

One rule for every adapter and for the openai providers: https, and plain http only when
the caller said `allow_http=True` (azure-core's `enforce_https`, with no loopback
exemption: a token over plain http is always the caller's explicit choice). A websocket
URL gets the rule of its http twin: `wss` as https, `ws` as plain http.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ._errors import ConfigurationError, InsecureTransportError

__all__ = ["DEFAULT_PORTS", "MAX_CHALLENGE_LENGTH", "HostPolicy", "claims_from_challenge"]

_MEMO_SIZE = 256
DEFAULT_PORTS = {"http": 80, "https": 443}
"""The port of a URL that names none, by scheme."""
# A websocket handshake is an http request: `wss` runs over TLS as https does, `ws` in clear.
_HTTP_TWIN = {"wss": "https", "ws": "http"}

# A CAE challenge is a few hundred bytes; longer ones are not read (they are not parsed
# for claims, and the 401 goes back as it is).
MAX_CHALLENGE_LENGTH = 16_384


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host pattern, port or None)."""
    text = pattern.strip().lower()
    port: str | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigurationError(f"allowed_hosts: cannot read the pattern {pattern!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text  # a name, or a bare IPv6 address (no port)
    if not host:
        raise ConfigurationError(f"allowed_hosts: the pattern {pattern!r} has no host")
    if port is None:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"allowed_hosts: {pattern!r} has an invalid port (use host or host:port, port 1-65535)"
        )
    return host, int(port)


def _refusal(url: str, scheme: str, host: str) -> str:
    """Why the token may not go to `url`, and the fix."""
    if not scheme:
        # `res.openai.azure.com`, `//res.openai.azure.com`, `localhost:8080/x`: the https
        # form is the likely intent.
        text = url.strip()
        if text.lower().startswith(("https:", "http:")):  # `https:/host`, `http:host`
            text = text.split(":", 1)[1]
        if not text.strip("/"):
            return "refusing to send an Azure AD token: the request has no URL"
        return (
            f"refusing to send an Azure AD token to {url!r}: the URL has no scheme; "
            f"did you mean {'https://' + text.lstrip('/')!r}?"
        )
    if _HTTP_TWIN.get(scheme, scheme) == "http":
        secure = "wss" if scheme == "ws" else "https"
        return (
            f"refusing to send an Azure AD token to {host!r} over plain {scheme}: use {secure}, or pass "
            "allow_http=True to send it in clear (loopback hosts included)"
        )
    return f"refusing to send an Azure AD token to {host!r} over {scheme}: use https"


class HostPolicy:
    """Decides, per request, whether the token may be attached.

    - https: always (subject to `allowed_hosts`);
    - plain http: only with `allow_http=True`, loopback hosts included. Without it, and
      for any other scheme (or none), `InsecureTransportError` is raised before
      anything is sent;
    - websockets (aiohttp's `ws_connect`, openai's realtime URL): `wss` as https, `ws` as
      plain http;
    - `allowed_hosts`: shell-style patterns (`*.openai.azure.com`, `myhost:8443`); a
      pattern with a port matches only that port (the scheme's default when the URL
      names none). Requests to other hosts go out without a token.
    """

    __slots__ = ("_allow_http", "_origins", "_patterns", "https_anywhere")

    def __init__(self, allow_http: bool = False, allowed_hosts: Iterable[str] | None = None) -> None:
        if isinstance(allowed_hosts, str):
            allowed_hosts = (allowed_hosts,)
        self._allow_http = allow_http
        self._patterns = None if allowed_hosts is None else tuple(_split_pattern(p) for p in allowed_hosts)
        # True when any https URL gets the token: adapters may skip the look-up for those.
        self.https_anywhere = self._patterns is None
        # Decisions, memoized (bounded): the per-request path should not re-parse
        # addresses or re-run fnmatch for the same few hosts. Refusals raise, uncached.
        self._origins: dict[str, bool] = {}

    def allows_url(self, url: str) -> bool:
        """True to attach the token to a request to `url`, False to send it without.

        Raises `InsecureTransportError` where the token may not go in clear (plain http
        without `allow_http`, another scheme, or none). The answer depends on the URL's
        `scheme://authority` alone, and is memoized by it.
        """
        if self.https_anywhere and url.startswith("https://"):
            return True
        start = url.find("//") + 2
        end = url.find("/", start)
        origin = url if end < 0 else url[:end]
        decision = self._origins.get(origin)
        if decision is None:
            parts = urlsplit(url)
            # `localhost:8080/x` reads as scheme `localhost`: only `scheme://` names one.
            named = parts.scheme if url[len(parts.scheme) : len(parts.scheme) + 3] == "://" else ""
            scheme = _HTTP_TWIN.get(named, named)
            host = (parts.hostname or "").lower()
            if scheme != "https" and not (scheme == "http" and self._allow_http):
                raise InsecureTransportError(_refusal(url, named, host))
            decision = self._matches(scheme, host, parts.port)
            if "?" not in origin and "#" not in origin and len(self._origins) < _MEMO_SIZE:
                self._origins[origin] = decision
        return decision

    def check_url(self, url: str) -> None:
        """Raise `InsecureTransportError` unless the token may be sent to `url`.

        `allows_url`, except that a host outside `allowed_hosts` is refused too: for
        callers that hand the token over without seeing the request (openai's
        providers), or that would send nothing useful without it.
        """
        if not self.allows_url(url):
            raise InsecureTransportError(
                f"refusing to send an Azure AD token to {urlsplit(url).hostname!r}: not in allowed_hosts"
            )

    def _matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self._patterns is None:
            return True
        effective = port if port is not None else DEFAULT_PORTS.get(scheme)
        return any(
            fnmatch.fnmatchcase(host, pattern) and (wanted is None or wanted == effective)
            for pattern, wanted in self._patterns
        )

    def __repr__(self) -> str:
        return f"HostPolicy(allow_http={self._allow_http}, allowed_hosts={self._patterns})"


# Linear time: a run of word characters that is not a `key=` is consumed whole by the
# second branch, so no position is scanned more than a bounded number of times.
_TOKENS = re.compile(r'([\w-]+)\s*=\s*"([^"]*)"|[\w-]+|[^\w"-]+|"[^"]*"?')


def claims_from_challenge(header: str | None) -> str | None:
    """The decoded `claims` of a CAE `insufficient_claims` Bearer challenge, else None.

    The claims are base64url, and Microsoft's services often omit the padding. A header
    longer than `MAX_CHALLENGE_LENGTH` is not read.
    """
    if not header or len(header) > MAX_CHALLENGE_LENGTH or not header.lstrip().lower().startswith("bearer"):
        return None
    params: dict[str, str] = {}
    for match in _TOKENS.finditer(header):
        key = match.group(1)
        if key is not None:
            params.setdefault(key.lower(), match.group(2))
    if params.get("error") != "insufficient_claims" or not params.get("claims"):
        return None
    encoded = params["claims"]
    try:
        decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded or None
