"""Where a token may go, and what a 401 challenge asks for.

One rule for every adapter and for the openai module-client provider.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ._errors import InsecureTransportError

__all__ = ["HostPolicy", "claims_from_challenge", "is_loopback"]

_MEMO_SIZE = 256


def is_loopback(host: str) -> bool:
    """`localhost`, `127.0.0.0/8` or `::1` (brackets allowed)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """Decides, per request, whether the token may be attached.

    - https: always (subject to `allowed_hosts`);
    - plain http: only to a loopback host, or anywhere with `allow_http=True`;
      otherwise `InsecureTransportError` is raised before anything is sent;
    - `allowed_hosts`: shell-style patterns (`*.openai.azure.com`); requests to other
      hosts go out without a token.
    """

    __slots__ = ("_allow_http", "_origins", "_patterns", "_seen", "https_anywhere")

    def __init__(self, allow_http: bool = False, allowed_hosts: Iterable[str] | None = None) -> None:
        if isinstance(allowed_hosts, str):
            allowed_hosts = (allowed_hosts,)
        self._allow_http = allow_http
        self._patterns = None if allowed_hosts is None else tuple(p.lower() for p in allowed_hosts)
        # True when any https URL gets the token: adapters may skip the look-up for those.
        self.https_anywhere = self._patterns is None
        # Decisions, memoized (bounded): the per-request path should not re-parse
        # addresses or re-run fnmatch for the same few hosts. Refusals raise, uncached.
        self._seen: dict[tuple[str, str], bool] = {}
        self._origins: dict[str, bool] = {}

    @property
    def checks_hosts(self) -> bool:
        return self._patterns is not None

    def allows(self, scheme: str, host: str) -> bool:
        """True to attach the token, False to send without; raises for insecure http."""
        decision = self._seen.get((scheme, host))
        if decision is None:
            decision = self._decide(scheme.lower(), host.lower())
            if len(self._seen) < _MEMO_SIZE:
                self._seen[(scheme, host)] = decision
        return decision

    def allows_url(self, url: str) -> bool:
        """`allows` for a whole URL, memoized by its `scheme://authority` prefix."""
        if self.https_anywhere and url.startswith("https://"):
            return True
        start = url.find("//") + 2
        end = url.find("/", start)
        origin = url if end < 0 else url[:end]
        decision = self._origins.get(origin)
        if decision is None:
            parts = urlsplit(url)
            decision = self.allows(parts.scheme, parts.hostname or "")
            if "?" not in origin and "#" not in origin and len(self._origins) < _MEMO_SIZE:
                self._origins[origin] = decision
        return decision

    def check_url(self, url: str) -> None:
        """Raise `InsecureTransportError` unless the token may be sent to `url`.

        `allows_url`, except that a host outside `allowed_hosts` is refused too: for
        callers that hand the token over without seeing the request (openai's
        module-client provider), or that would send nothing useful without it.
        """
        if not self.allows_url(url):
            raise InsecureTransportError(
                f"refusing to send an Azure AD token to {urlsplit(url).hostname!r}: not in allowed_hosts"
            )

    def _decide(self, scheme: str, host: str) -> bool:
        if scheme != "https" and not (scheme == "http" and (self._allow_http or is_loopback(host))):
            raise InsecureTransportError(
                f"refusing to send an Azure AD token to {host!r} over {scheme}: use https "
                "(plain http is allowed only to loopback hosts, or with allow_http=True)"
            )
        return self._patterns is None or any(fnmatch.fnmatchcase(host, p) for p in self._patterns)

    def __repr__(self) -> str:
        return f"HostPolicy(allow_http={self._allow_http}, allowed_hosts={self._patterns})"


_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def claims_from_challenge(header: str | None) -> str | None:
    """The decoded `claims` of a CAE `insufficient_claims` Bearer challenge, else None.

    The claims are base64url, and Microsoft's services often omit the padding.
    """
    if not header or not header.lstrip().lower().startswith("bearer"):
        return None
    params = {k.lower(): v for k, v in _PARAM.findall(header)}
    if params.get("error") != "insufficient_claims" or not params.get("claims"):
        return None
    encoded = params["claims"]
    try:
        decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded or None
