"""The proxy check's pure decisions: the environment snapshot, adapters, the refusal's words.

Real clients and real proxies: tests/integration/test_proxies.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from azure_ad_token_auth import InsecureTransportError
from azure_ad_token_auth._policy import THROUGH_PROXY, HostPolicy
from azure_ad_token_auth._proxies import _adapter_opaque, environment_state, httpx_proxied, requests_proxied

URL = "http://127.0.0.1:8080/x"


def test_the_environment_snapshot_changes_with_every_proxy_variable(no_proxy_env: pytest.MonkeyPatch) -> None:
    """Any `*_proxy` name in any case, and CGI's REQUEST_METHOD; other variables do not count."""
    before = environment_state()
    assert environment_state() is before  # unchanged: the same snapshot, nothing rebuilt
    no_proxy_env.setenv("UNRELATED_SETTING", "1")
    assert environment_state() == before
    states = [before]
    for name, value in [
        ("Http_Proxy", "http://127.0.0.2:1"),
        ("Http_Proxy", "http://127.0.0.2:2"),
        ("nO_pRoXy", "127.0.0.1"),
        ("REQUEST_METHOD", "GET"),
    ]:
        no_proxy_env.setenv(name, value)
        states.append(environment_state())
        assert states[-1] != states[-2], name
    no_proxy_env.delenv("Http_Proxy")
    assert environment_state() != states[-1]
    no_proxy_env.delenv("nO_pRoXy")
    no_proxy_env.delenv("REQUEST_METHOD")
    assert environment_state() == before


def test_the_environment_snapshot_sees_a_variable_removed_and_another_added(no_proxy_env: pytest.MonkeyPatch) -> None:
    """Same count of variables, one proxy variable more: still a new snapshot."""
    no_proxy_env.setenv("SOME_PLACEHOLDER", "1")
    before = environment_state()
    no_proxy_env.delenv("SOME_PLACEHOLDER")
    no_proxy_env.setenv("all_PROXY", "http://127.0.0.2:1")
    assert environment_state() != before
    assert any(b"all_PROXY" in pair or "all_PROXY" in pair for pair in environment_state() or ())


@pytest.mark.parametrize(
    ("route", "words"),
    [(True, THROUGH_PROXY), (THROUGH_PROXY, THROUGH_PROXY), ("when it cannot tell: reasons", "cannot tell: reasons")],
)
def test_the_refusal_names_the_host_and_the_route(route: Any, words: str) -> None:
    with pytest.raises(InsecureTransportError) as refused:
        HostPolicy().allows_url(URL, lambda url: route)
    assert "'127.0.0.1'" in str(refused.value) and words in str(refused.value)


def test_the_route_is_asked_only_for_plain_http_to_loopback_without_allow_http() -> None:
    asked: list[str] = []

    def route(url: str) -> str:
        asked.append(url)
        return "when it cannot tell"

    assert HostPolicy().allows_url("https://127.0.0.1/x", route)
    assert HostPolicy(allow_http=True).allows_url(URL, route)
    assert asked == []
    for direct in (None, False):
        assert HostPolicy().allows_url(URL, lambda url, answer=direct: answer)  # type: ignore[misc]


def test_outside_any_client_the_route_cannot_be_told() -> None:
    for proxied in (requests_proxied, httpx_proxied):
        route = proxied(URL)
        assert route is not None and "cannot tell" in route and "allow_http=True" in route


class _Overrides(HTTPAdapter):
    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().send(request, **kwargs)


class _Connects(HTTPAdapter):
    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return super().get_connection_with_tls_context(*args, **kwargs)


class _Tuned(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)


def test_adapters_requests_own_send_path_is_read_and_nothing_else() -> None:
    assert _adapter_opaque(HTTPAdapter()) is None
    assert _adapter_opaque(_Tuned()) is None
    for adapter, words in [
        (_Overrides(), "(_Overrides) overrides send"),
        (_Connects(), "overrides get_connection_with_tls_context"),
        (requests.adapters.BaseAdapter(), "is not an HTTPAdapter"),
    ]:
        assert words in (_adapter_opaque(adapter) or "")
    patched = HTTPAdapter()
    patched.send = patched.send  # type: ignore[method-assign]
    assert "overrides send" in (_adapter_opaque(patched) or "")
    proxied = HTTPAdapter()
    proxied.poolmanager = urllib3.ProxyManager("http://127.0.0.2:1")
    assert _adapter_opaque(proxied) == THROUGH_PROXY
    custom = HTTPAdapter()
    custom.poolmanager = type("Pool", (urllib3.PoolManager,), {})()
    assert "connects through a Pool" in (_adapter_opaque(custom) or "")


def test_a_wrapped_session_request_is_read_through_its_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrumentation that wraps `Session.request` (functools.wraps) hides nothing: the
    original's frame, with the call's `proxies`, is the one read."""
    import functools
    import importlib

    from azure_ad_token_auth import _proxies

    original = requests.Session.request

    @functools.wraps(original)
    def traced(self: requests.Session, *args: Any, **kwargs: Any) -> Any:
        return original(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", traced)
    fresh = importlib.reload(_proxies)  # loaded after the instrumentation, as in an application
    routes: list[str | None] = []

    class Stop(Exception):
        pass

    def probe(r: requests.PreparedRequest) -> requests.PreparedRequest:
        routes.append(fresh.requests_proxied(r.url or ""))
        raise Stop

    with pytest.raises(Stop):
        requests.Session().get(URL, auth=probe, proxies={"http": "http://127.0.0.2:1"})
    monkeypatch.undo()
    importlib.reload(_proxies)
    assert routes == [THROUGH_PROXY]
