"""The scope follows the endpoint's cloud (`_clouds`)."""

from __future__ import annotations

import pytest

from azure_ad_token_auth._clouds import DEFAULT_SCOPE, scope_for_host, scope_for_url

PUBLIC = "https://cognitiveservices.azure.com/.default"
GOVERNMENT = "https://cognitiveservices.azure.us/.default"
CHINA = "https://cognitiveservices.azure.cn/.default"


@pytest.mark.parametrize(
    ("url", "scope"),
    [
        ("https://res.openai.azure.com/openai/deployments/x", PUBLIC),
        ("https://RES.OpenAI.Azure.Com./", PUBLIC),
        ("https://res.cognitiveservices.azure.com", PUBLIC),
        ("https://res.services.ai.azure.com/models", PUBLIC),
        ("https://proj.eastus.inference.ai.azure.com", PUBLIC),
        ("https://res.openai.azure.us/openai/v1/", GOVERNMENT),
        ("https://res.cognitiveservices.azure.us", GOVERNMENT),
        ("https://res.openai.azure.cn", CHINA),
        ("https://res.cognitiveservices.azure.cn:443/x", CHINA),
    ],
)
def test_known_hosts_get_their_clouds_scope(url: str, scope: str) -> None:
    assert scope_for_url(url) == scope


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "http://127.0.0.1:8080/openai",
        "https://openai.azure.us",  # the suffix alone is no resource host
        "https://evil.openai.azure.us.example.com",
        "",
        None,
        "http://[::1",  # unparsable
    ],
)
def test_unknown_hosts_keep_the_default(url: str | None) -> None:
    assert scope_for_url(url) == DEFAULT_SCOPE
    assert DEFAULT_SCOPE == PUBLIC


def test_scope_for_host_says_none_for_unknown_hosts() -> None:
    assert scope_for_host("res.openai.azure.us") == GOVERNMENT
    assert scope_for_host("example.com") is None
