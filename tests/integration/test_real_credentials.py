"""azure-identity's real credentials, end to end on loopback stand-ins, through every adapter.

Workload identity, client secret and certificate talk to `EntraIdStandIn` over TLS
through real MSAL; IMDS managed identity to `ImdsEndpoint`; `AzureCliCredential` runs
the fake `az`. Each is used directly and as `DefaultAzureCredential` picks it from
environment variables. The stand-ins live for the module (TLS and MSAL set-up are the
slow part); each test counts from where the previous one left them.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.identity
import pytest
import requests
import time_machine

from azure_ad_token_auth import AzureADTokenAuth, TokenCache, install_openai_session, token_provider
from azure_ad_token_auth import uninstall_openai_session as _uninstall
from azure_ad_token_auth.testing import (
    AzureOpenAIStandIn,
    EntraIdStandIn,
    FakeAzureCli,
    ImdsEndpoint,
    TokenRegistry,
    fingerprint,
    patched_environ,
)
from conftest import fresh_openai_state, wait_until

pytest.importorskip("trustme")

SCOPE = "https://cognitiveservices.azure.com/.default"
THREADS = 32
CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1726000000"}}}'


@dataclass
class StandIns:
    registry: TokenRegistry
    entra: EntraIdStandIn
    imds: ImdsEndpoint
    no_identity: ImdsEndpoint
    az: FakeAzureCli
    service: AzureOpenAIStandIn


@pytest.fixture(scope="module")
def stands() -> Iterator[StandIns]:
    registry = TokenRegistry()
    with contextlib.ExitStack() as stack:
        yield StandIns(
            registry,
            stack.enter_context(EntraIdStandIn(registry=registry)),
            stack.enter_context(ImdsEndpoint(registry=registry)),
            stack.enter_context(ImdsEndpoint(registry=registry, assigned=False)),
            stack.enter_context(FakeAzureCli(registry=registry)),
            stack.enter_context(AzureOpenAIStandIn(registry=registry)),
        )


@pytest.fixture
def s(stands: StandIns) -> StandIns:
    stands.service.reset()
    stands.entra.set_lifetime(3600)
    stands.imds.set_lifetime(86400)
    stands.az.set_lifetime(3600)
    return stands


@dataclass(frozen=True)
class Kind:
    """How to build one credential on the stand-ins, and what counts its token requests."""

    name: str
    build: Callable[[StandIns], Any]
    env: Callable[[StandIns], list[dict[str, str]]]
    counter: Callable[[StandIns], int]


def _direct_entra(cls: str) -> Callable[[StandIns], Any]:
    def build(s: StandIns) -> Any:
        e, kw = s.entra, s.entra.credential_kwargs()
        if cls == "workload-identity":
            return azure.identity.WorkloadIdentityCredential(
                tenant_id=e.tenant, client_id=e.client_id, token_file_path=e.federated_token_file, **kw
            )
        if cls == "secret":
            return azure.identity.ClientSecretCredential(e.tenant, e.client_id, e.client_secret, **kw)
        return azure.identity.CertificateCredential(e.tenant, e.client_id, e.certificate_path, **kw)

    return build


def _default(s: StandIns) -> Any:
    # Environment variables choose the credential; MSAL must not ask login.microsoftonline.com
    # about the loopback authority, and no variable turns that off.
    return azure.identity.DefaultAzureCredential(disable_instance_discovery=True)


def _entra_calls(s: StandIns) -> int:
    return s.entra.calls


KINDS = [
    Kind("workload-identity", _direct_entra("workload-identity"), lambda s: [], _entra_calls),
    Kind("client-secret", _direct_entra("secret"), lambda s: [], _entra_calls),
    Kind("certificate", _direct_entra("certificate"), lambda s: [], _entra_calls),
    Kind(
        "imds", lambda s: azure.identity.ManagedIdentityCredential(), lambda s: [s.imds.env()], lambda s: s.imds.calls
    ),
    Kind("cli", lambda s: azure.identity.AzureCliCredential(), lambda s: [s.az.env()], lambda s: s.az.runs),
    Kind("default:workload-identity", _default, lambda s: [s.entra.env("workload-identity")], _entra_calls),
    Kind("default:client-secret", _default, lambda s: [s.entra.env("secret")], _entra_calls),
    Kind("default:certificate", _default, lambda s: [s.entra.env("certificate")], _entra_calls),
    Kind("default:imds", _default, lambda s: [s.imds.env()], lambda s: s.imds.calls),
    # A developer machine: no managed identity (IMDS answers "none assigned"), signed in to az.
    Kind("default:cli", _default, lambda s: [s.no_identity.env(), s.az.env()], lambda s: s.az.runs),
]
DIRECT = [k for k in KINDS if not k.name.startswith("default:")]
CHOSEN = [k for k in KINDS if k.name.startswith("default:")]
ANSWERED_BY = {
    "default:workload-identity": "WorkloadIdentityCredential",
    "default:client-secret": "EnvironmentCredential",
    "default:certificate": "EnvironmentCredential",
    "default:imds": "ManagedIdentityCredential",
    "default:cli": "AzureCliCredential",
}


@contextlib.contextmanager
def credential_of(kind: Kind, s: StandIns) -> Iterator[Any]:
    # The service's variables too: the clients made in the block trust its https.
    with patched_environ(s.service.env(), *kind.env(s)):
        credential = kind.build(s)
        yield credential
        if kind.name in ANSWERED_BY:
            assert type(credential._successful_credential).__name__ == ANSWERED_BY[kind.name]


def burst(call: Callable[[], Any]) -> list[Any]:
    """`call` from THREADS threads released together."""
    barrier = threading.Barrier(THREADS)

    def one(_: int) -> Any:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def echo(s: StandIns) -> str:
    return f"{s.service.base_url}/echo"


def assert_all_valid(s: StandIns, count: int) -> None:
    seen = s.service.requests
    assert len(seen) == count
    assert {r.token_status for r in seen} == {"valid"}
    assert len({r.token_fingerprint for r in seen}) == 1


# --------------------------------------------------------------------------- one token for a cold burst


def _requests_burst(credential: Any, s: StandIns) -> None:
    auth = AzureADTokenAuth(credential)
    statuses = burst(lambda: requests.post(echo(s), data=b"{}", auth=auth, timeout=30).status_code)
    assert statuses == [200] * THREADS
    assert_all_valid(s, THREADS)


def _provider_burst(credential: Any, s: StandIns) -> None:
    provider = token_provider(credential)
    tokens = burst(provider)
    assert len(set(tokens)) == 1 and s.registry.check(tokens[0]) == "valid"
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    assert requests.post(echo(s), headers=headers, timeout=30).status_code == 200


def _httpx_burst(credential: Any, s: StandIns) -> None:
    httpx = pytest.importorskip("httpx")
    from azure_ad_token_auth.httpx import AzureADHttpxAuth

    with httpx.Client(auth=AzureADHttpxAuth(credential), timeout=30) as client:
        statuses = burst(lambda: client.post(echo(s), content=b"{}").status_code)
    assert statuses == [200] * THREADS
    assert_all_valid(s, THREADS)


ADAPTERS = {"requests": _requests_burst, "token_provider": _provider_burst, "httpx": _httpx_burst}


# Every kind through requests and the provider; httpx with each credential class once.
BURSTS = [(k, a) for k in KINDS for a in ("requests", "token_provider")] + [(k, "httpx") for k in DIRECT]


@pytest.mark.parametrize(("kind", "adapter"), BURSTS, ids=[f"{k.name}-{a}" for k, a in BURSTS])
def test_a_cold_burst_of_32_threads_makes_one_token_request(s: StandIns, kind: Kind, adapter: str) -> None:
    before = kind.counter(s)
    with credential_of(kind, s) as credential:
        ADAPTERS[adapter](credential, s)
    assert kind.counter(s) - before == 1


# --------------------------------------------------------------------------- openai's module client


@pytest.fixture
def openai_module() -> Iterator[Any]:
    openai = pytest.importorskip("openai")
    from azure_ad_token_auth._openai import openai_major_version

    major = openai_major_version(openai)
    names = ["api_key", "api_type", "api_version", "requestssession", "api_base"]
    if major >= 1:
        names = ["api_key", "api_type", "azure_endpoint", "api_version", "azure_ad_token", "azure_ad_token_provider"]
        fresh_openai_state(openai)
    saved = {name: getattr(openai, name) for name in names}
    yield openai
    _uninstall(openai)
    for name, value in saved.items():
        setattr(openai, name, value)
    fresh_openai_state(openai)


@pytest.mark.parametrize("kind", CHOSEN, ids=[k.name for k in CHOSEN])
def test_install_openai_session_with_each_real_credential(s: StandIns, kind: Kind, openai_module: Any) -> None:
    from azure_ad_token_auth._demo_setup import DEPLOYMENT, complete, configure
    from azure_ad_token_auth._openai import openai_major_version

    major = openai_major_version(openai_module)
    before = kind.counter(s)
    with credential_of(kind, s) as credential:
        configure(openai_module, major, s.service.base_url, "2024-02-01")
        install_openai_session(credential, openai_module=openai_module)
        texts = burst(lambda: complete(openai_module, major, DEPLOYMENT))
    assert set(texts) == {s.service.completion}
    assert_all_valid(s, THREADS)
    assert kind.counter(s) - before == 1


# --------------------------------------------------------------------------- CAE through real MSAL


COMPLETIONS = "/openai/deployments/d/completions?api-version=2024-02-01"


def _requests_sender(credential: Any, s: StandIns, stack: contextlib.ExitStack) -> tuple[Callable[[], int], Any]:
    auth = AzureADTokenAuth(credential)
    session = stack.enter_context(requests.Session())
    session.auth = auth
    return lambda: session.post(s.service.base_url + COMPLETIONS, json={"prompt": "x"}, timeout=30).status_code, auth


def _httpx_sender(credential: Any, s: StandIns, stack: contextlib.ExitStack) -> tuple[Callable[[], int], Any]:
    httpx = pytest.importorskip("httpx")
    from azure_ad_token_auth.httpx import AzureADHttpxAuth

    auth = AzureADHttpxAuth(credential)
    client = stack.enter_context(httpx.Client(auth=auth, timeout=30))
    return lambda: client.post(s.service.base_url + COMPLETIONS, json={"prompt": "x"}).status_code, auth


CAE_CASES = [(k, _requests_sender) for k in KINDS if k.counter is _entra_calls] + [
    (k, _httpx_sender) for k in KINDS if k.name in ("workload-identity", "client-secret")
]


@pytest.mark.parametrize(
    ("kind", "sender"), CAE_CASES, ids=[f"{k.name}-{f.__name__.split('_')[1]}" for k, f in CAE_CASES]
)
def test_a_cae_challenge_reaches_entra_as_claims_and_the_resent_request_carries_the_new_token(
    s: StandIns, kind: Kind, sender: Callable[..., tuple[Callable[[], int], Any]]
) -> None:
    with credential_of(kind, s) as credential, contextlib.ExitStack() as stack:
        send, auth = sender(credential, s, stack)
        assert send() == 200
        first = s.service.requests[-1].token_fingerprint
        before = s.entra.calls
        s.service.challenge_next(CLAIMS)
        assert send() == 200
        current = auth.cache.current
    challenged, resent = s.service.requests[-2:]
    assert (challenged.status, challenged.token_fingerprint) == (401, first)
    assert resent.status == 200 and resent.token_status == "valid"
    assert resent.token_fingerprint != first
    assert s.entra.calls - before == 1
    sent = json.loads(s.entra.requests[-1].claims or "null")
    assert sent["access_token"]["nbf"] == {"essential": True, "value": "1726000000"}
    assert sent["access_token"]["xms_cc"] == {"values": ["CP1"]}  # MSAL asked as a CAE-capable client
    assert current is not None and fingerprint(current.token) == resent.token_fingerprint
    assert (s.registry.claims(current.token) or {})["xms_cc"] == ["CP1"]  # Entra marked it CAE-capable


# --------------------------------------------------------------------------- renewal timing


@pytest.mark.parametrize("kind", [k for k in KINDS if k.name.endswith("imds")], ids=["imds", "default:imds"])
def test_imds_tokens_renew_at_refresh_on_in_the_background(s: StandIns, kind: Kind) -> None:
    with time_machine.travel(1_900_000_000.0, tick=False) as clock, credential_of(kind, s) as credential:
        cache = TokenCache(credential, SCOPE)
        auth = AzureADTokenAuth(cache)
        before = s.imds.calls
        assert requests.post(echo(s), auth=auth, timeout=30).status_code == 200
        first = s.service.requests[-1].token_fingerprint
        status = cache.status()
        assert status.expires_on == pytest.approx(1_900_000_000 + 86400, abs=2)
        # MSAL sets refresh_on at half-life for a token of 2 h or more; the cache renews then.
        assert status.refresh_at == pytest.approx(1_900_000_000 + 43200, abs=2)
        clock.shift(43200 - 60)
        assert requests.post(echo(s), auth=auth, timeout=30).status_code == 200
        assert s.imds.calls - before == 1
        clock.shift(61)
        s.imds.pause()  # IMDS holds the renewal: a request that waited for it would hang here
        try:
            assert requests.post(echo(s), auth=auth, timeout=30).status_code == 200
            assert s.service.requests[-1].token_fingerprint == first  # served at once, old token
            wait_until(lambda: cache.status().credential_calls == 2)  # the renewal is on its way...
            assert s.imds.calls - before == 1  # ...held by IMDS, while requests go out
        finally:
            s.imds.resume()
        wait_until(lambda: cache.status().refreshes == 2)
        assert s.imds.calls - before == 2
        assert requests.post(echo(s), auth=auth, timeout=30).status_code == 200
        assert s.service.requests[-1].token_fingerprint not in (None, first)
        assert {r.token_status for r in s.service.requests} == {"valid"}


@pytest.mark.parametrize("kind", [k for k in KINDS if k.name.endswith("cli")], ids=["cli", "default:cli"])
def test_azure_cli_runs_once_per_token_lifetime_under_a_request_loop(s: StandIns, kind: Kind) -> None:
    lifetime, step, hours = 3600, 300, 2
    s.az.set_lifetime(lifetime)
    with time_machine.travel(1_900_000_000.0, tick=False) as clock, credential_of(kind, s) as credential:
        cache = TokenCache(credential, SCOPE)
        session = requests.Session()
        session.auth = AzureADTokenAuth(cache)
        before = s.az.runs
        for _ in range(hours * 3600 // step):
            assert session.post(echo(s), timeout=30).status_code == 200
            # A renewal started in the background finishes before the clock moves on.
            wait_until(lambda: cache.status().credential_calls == cache.status().refreshes)
            clock.shift(step)
    runs = s.az.runs - before
    seen = s.service.requests
    assert len(seen) == hours * 3600 // step
    assert {r.token_status for r in seen} == {"valid"}
    # Every run's token was used, and a token served most of its hour: 2 or 3 runs
    # (renewal 5 minutes before expiry lands on a request, or just after it).
    assert runs == len({r.token_fingerprint for r in seen})
    assert hours <= runs <= hours + 1
