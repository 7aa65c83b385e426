"""The 401 flow stepped by hand, with no client and no socket (as httpx's tests/test_auth.py).

The drivers that answer its steps on real clients: tests/unit/test_drivers.py, tests/adapters.
"""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace
from typing import Any

import pytest

from azure_ad_token_auth import InsecureTransportError, TokenCache
from azure_ad_token_auth._flow import REPLAYABLE, TOKEN, Invalidate, Response, challenge_flow
from azure_ad_token_auth._policy import MAX_CHALLENGE_LENGTH, HostPolicy, claims_from_challenge

CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1726077595"}}}'


def sent(cache: TokenCache) -> Any:
    """A request that went out with our token on it (the drivers' `attach`)."""
    return SimpleNamespace(headers={"Authorization": cache.get_header()})


def rejected(cache: TokenCache, req: Any, challenge: str | None = None) -> tuple[Any, Any]:
    """The flow after a 401 to `req`'s token, its `Invalidate` step answered as a driver does:
    (flow, next step)."""
    attached = req.headers["Authorization"]
    flow = challenge_flow(req, Response(401, attached, challenge), attached)
    step = next(flow)
    assert isinstance(step, Invalidate)
    return flow, flow.send(cache.invalidate(step.token, step.claims))


def test_a_response_that_is_no_401_ends_the_flow(fake) -> None:
    cache = TokenCache(fake)
    req = sent(cache)
    for status in (200, 403, 500):
        with pytest.raises(StopIteration):
            next(
                challenge_flow(req, Response(status, req.headers["Authorization"], None), req.headers["Authorization"])
            )
    assert cache.current is not None and fake.calls == 1


def test_a_401_to_our_token_drops_it_and_resends_once_with_a_new_one(fake) -> None:
    cache = TokenCache(fake)
    req = sent(cache)
    first = req.headers["Authorization"]
    flow, step = rejected(cache, req, 'Bearer error="invalid_token"')
    assert step is REPLAYABLE
    assert flow.send(True) is TOKEN
    assert cache.current is None  # dropped
    assert flow.send(cache.get_header()) is req
    assert req.headers["Authorization"] == "Bearer " + fake.tokens[1] != first
    with pytest.raises(StopIteration):  # once: whatever comes back goes to the caller
        flow.send(Response(401, req.headers["Authorization"], None))
    assert fake.calls == 2


def test_a_cae_challenge_sends_its_claims_to_the_credential(fake) -> None:
    cache = TokenCache(fake)
    encoded = base64.urlsafe_b64encode(CLAIMS.encode()).decode().rstrip("=")
    flow, step = rejected(cache, sent(cache), f'Bearer realm="", error="insufficient_claims", claims="{encoded}"')
    assert step is REPLAYABLE
    assert flow.send(True) is TOKEN
    flow.send(cache.get_header())
    assert fake.claims == [None, CLAIMS]


@pytest.mark.parametrize("other", [None, "Bearer someone-else", "Basic dXNlcjpwYXNz"])
def test_a_401_to_a_header_we_did_not_attach_is_left_alone(fake, other: str | None) -> None:
    cache = TokenCache(fake)
    req = sent(cache)
    with pytest.raises(StopIteration):
        next(challenge_flow(req, Response(401, other, None), req.headers["Authorization"]))
    with pytest.raises(StopIteration):  # nothing attached: a host that got no token
        next(challenge_flow(req, Response(401, other, None), None))
    assert cache.current is not None  # our token was not dropped
    assert fake.calls == 1


def test_a_body_that_cannot_be_replayed_is_not_resent_but_the_token_is_dropped(fake) -> None:
    cache = TokenCache(fake)
    flow, step = rejected(cache, sent(cache))
    assert step is REPLAYABLE
    with pytest.raises(StopIteration):
        flow.send(False)
    assert cache.current is None
    assert fake.calls == 1


def test_the_credential_handing_back_the_rejected_token_is_not_resent(fake) -> None:
    cache = TokenCache(fake)
    req = sent(cache)
    first = req.headers["Authorization"]
    flow, _ = rejected(cache, req)
    assert flow.send(True) is TOKEN
    with pytest.raises(StopIteration):
        flow.send(first)


def test_within_the_backoff_a_second_401_makes_no_credential_call(fake) -> None:
    cache = TokenCache(fake)
    flow, _ = rejected(cache, sent(cache))
    flow.send(True)
    flow.send(cache.get_header())
    with pytest.raises(StopIteration):  # the renewed token rejected too: the driver answers no retry
        rejected(cache, sent(cache))
    assert fake.calls == 2


def test_the_flow_does_no_io_the_driver_reports_the_rejected_token(fake) -> None:
    """A 401 to our token is an `Invalidate` step naming the token and the challenge's claims:
    the driver reports it (`TokenCache.invalidate`, which writes a file with `shared_cache`),
    the flow itself touches no cache."""
    cache, req = TokenCache(fake), SimpleNamespace(headers={})
    attached = req.headers["Authorization"] = cache.get_header()
    encoded = base64.urlsafe_b64encode(CLAIMS.encode()).decode().rstrip("=")
    challenge = f'Bearer error="insufficient_claims", claims="{encoded}"'
    flow = challenge_flow(req, Response(401, attached, challenge), attached)
    step = next(flow)
    assert step == Invalidate(fake.tokens[0], CLAIMS)
    assert fake.tokens[0] not in repr(step)
    assert cache.current is not None and cache.current.token == fake.tokens[0]  # nothing dropped yet
    with pytest.raises(StopIteration):  # the driver's answer: no retry (within the backoff, say)
        flow.send(False)
    assert req.headers["Authorization"] == attached and fake.calls == 1


def test_no_token_in_the_repr_of_a_response_step(fake) -> None:
    header = TokenCache(fake).get_header()
    assert fake.tokens[0] not in repr(Response(401, header, None))


@pytest.mark.parametrize("pattern", ["host:", "host:http", "host:0", "host:70000", "[::1]x", ":443"])
def test_an_allowed_hosts_pattern_with_a_bad_port_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        HostPolicy(allowed_hosts=[pattern])


@pytest.mark.parametrize(
    ("pattern", "url", "attached"),
    [
        ("*.openai.azure.com", "https://x.openai.azure.com:8443/a", True),
        ("*.openai.azure.com:443", "https://x.openai.azure.com/a", True),
        ("*.openai.azure.com:443", "https://x.openai.azure.com:8443/a", False),
        ("[::1]:8080", "http://[::1]:8080/a", True),
        ("::1", "http://[::1]:8080/a", True),
        ("localhost:8080", "http://localhost:9090/a", False),
    ],
)
def test_allowed_hosts_ports(pattern: str, url: str, attached: bool) -> None:
    assert HostPolicy(allow_http=True, allowed_hosts=[pattern]).allows_url(url) is attached


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("res.openai.azure.com", "https://res.openai.azure.com"),
        ("//res.openai.azure.com/openai", "https://res.openai.azure.com/openai"),
        ("localhost:8443/openai", "https://localhost:8443/openai"),  # not a `localhost:` scheme
        ("https:/res.openai.azure.com", "https://res.openai.azure.com"),
    ],
)
def test_a_url_with_no_scheme_is_refused_showing_the_https_form(url: str, meant: str) -> None:
    with pytest.raises(InsecureTransportError) as caught:
        HostPolicy(allow_http=True).allows_url(url)
    assert str(caught.value).endswith(f"the URL has no scheme; did you mean {meant!r}?")
    assert "over :" not in str(caught.value)


@pytest.mark.parametrize("url", ["", "  ", "//"])
def test_no_url_at_all_is_refused_saying_so(url: str) -> None:
    with pytest.raises(InsecureTransportError, match="the request has no URL"):
        HostPolicy().allows_url(url)


@pytest.mark.parametrize("url", ["ftp://res.openai.azure.com/x", "gopher://127.0.0.1/x", "file:///etc/passwd"])
def test_other_schemes_are_refused_even_with_allow_http(url: str) -> None:
    with pytest.raises(InsecureTransportError, match="use https"):
        HostPolicy(allow_http=True).allows_url(url)


@pytest.mark.parametrize(
    ("url", "attached"),
    [
        ("wss://x.openai.azure.com/openai/realtime", True),
        ("WSS://x.openai.azure.com:443/openai/realtime", True),
        ("wss://x.openai.azure.com:8443/openai/realtime", False),  # the pattern's port is https's, 443
        ("wss://other.example/openai/realtime", False),
        ("ws://x.openai.azure.com:80/openai/realtime", True),  # plain, as http with allow_http
    ],
)
def test_a_websocket_url_gets_the_rule_of_its_http_twin(url: str, attached: bool) -> None:
    """`wss` is TLS, as https; `ws` is in clear, as plain http (aiohttp's `ws_connect`, openai's realtime)."""
    policy = HostPolicy(allow_http=True, allowed_hosts=["*.openai.azure.com:443", "*.openai.azure.com:80"])
    assert policy.allows_url(url) is attached
    if url.startswith("ws:"):
        with pytest.raises(InsecureTransportError, match=r"over plain ws: use wss, or pass allow_http=True"):
            HostPolicy().allows_url(url)


def test_check_url_refuses_a_host_outside_allowed_hosts_and_allows_the_rest() -> None:
    policy = HostPolicy(allowed_hosts=["*.openai.azure.com"])
    policy.check_url("https://res.openai.azure.com/openai")
    with pytest.raises(InsecureTransportError, match="'other.example': not in allowed_hosts"):
        policy.check_url("https://other.example/x")
    with pytest.raises(InsecureTransportError, match="plain http"):
        policy.check_url("http://res.openai.azure.com/openai")


HOSTILE = [
    "Bearer " + "a" * 61_440,
    "Bearer " + "a" * 16_000,
    'Bearer a="' + "a" * 16_000,
    "Bearer " + "a=" * 8_000,
    "Bearer " + "a " * 8_000 + "=",
    "Bearer " + '"' * 16_000,
    "Bearer " + "a," * 30_000,
]


@pytest.mark.parametrize("header", HOSTILE, ids=lambda h: f"{h[7:12]!r}x{len(h)}")
def test_a_hostile_challenge_is_parsed_in_linear_time(header: str) -> None:
    start = time.perf_counter()
    assert claims_from_challenge(header) is None
    assert time.perf_counter() - start < 0.5  # generous: the old parser took ~30 s on 60 KB


def test_a_real_challenge_is_still_read_after_long_parameters() -> None:
    encoded = base64.urlsafe_b64encode(CLAIMS.encode()).decode().rstrip("=")
    header = f'Bearer realm="{"r" * 8000}", error="insufficient_claims", claims="{encoded}"'
    assert claims_from_challenge(header) == CLAIMS
    assert claims_from_challenge(header + " " * MAX_CHALLENGE_LENGTH) is None  # over the cap: not read


def test_a_renewal_failing_after_a_challenge_chains_the_401_without_the_token(fake) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from azure_ad_token_auth import TokenRejectedError

    cache = TokenCache(fake)
    req = sent(cache)
    first = req.headers["Authorization"]
    echoed = f'Bearer error="invalid_token", error_description="rejected {first[7:]}"'  # a service echoing it
    flow, step = rejected(cache, req, echoed)
    assert step is REPLAYABLE
    assert flow.send(True) is TOKEN
    refusal = ClientAuthenticationError("no")
    with pytest.raises(ClientAuthenticationError) as caught:
        flow.throw(refusal)
    assert caught.value is refusal  # the credential's own error, unchanged but for its cause
    cause = caught.value.__cause__
    assert isinstance(cause, TokenRejectedError) and cause.status == 401
    assert first[7:] not in str(cause) and first[7:] not in cause.challenge
    assert "<token hidden>" in cause.challenge


def test_a_renewal_failing_after_a_401_without_a_challenge_is_not_chained(fake) -> None:
    cache = TokenCache(fake)
    flow, step = rejected(cache, sent(cache))
    assert step is REPLAYABLE
    assert flow.send(True) is TOKEN
    with pytest.raises(RuntimeError) as caught:
        flow.throw(RuntimeError("credential down"))
    assert caught.value.__cause__ is None
