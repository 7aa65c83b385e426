"""Which scope an endpoint needs: the rules per Azure cloud, as data.

Azure OpenAI, Cognitive Services and AI Foundry accept a token for the Cognitive
Services resource of their own cloud only: a public-cloud token on an Azure Government
endpoint fails with an invalid audience. When the caller gives no scopes, the scope
follows the endpoint's host; a host no rule knows keeps the public-cloud default.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["CLOUD_RULES", "DEFAULT_SCOPE", "scope_for_host", "scope_for_url"]

DEFAULT_SCOPE = "https://cognitiveservices.azure.com/.default"
_GOVERNMENT = "https://cognitiveservices.azure.us/.default"
_CHINA = "https://cognitiveservices.azure.cn/.default"

CLOUD_RULES: tuple[tuple[str, str, str], ...] = (
    # (host suffix, cloud, scope); the first suffix that matches wins.
    (".openai.azure.com", "Azure public cloud", DEFAULT_SCOPE),
    (".cognitiveservices.azure.com", "Azure public cloud", DEFAULT_SCOPE),
    (".services.ai.azure.com", "Azure public cloud", DEFAULT_SCOPE),
    (".ai.azure.com", "Azure public cloud", DEFAULT_SCOPE),
    (".openai.azure.us", "Azure Government", _GOVERNMENT),
    (".cognitiveservices.azure.us", "Azure Government", _GOVERNMENT),
    (".openai.azure.cn", "Azure China", _CHINA),
    (".cognitiveservices.azure.cn", "Azure China", _CHINA),
)
"""The rules, in the order they are tried; the docs page on clouds lists them."""


def scope_for_host(host: str) -> str | None:
    """The scope a rule gives `host` (a DNS name, any case, trailing dot allowed), or None."""
    name = host.lower().rstrip(".")
    for suffix, _cloud, scope in CLOUD_RULES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return scope
    return None


def scope_for_url(url: str | None) -> str:
    """The scope for requests to `url`: its cloud's, or `DEFAULT_SCOPE` for unknown hosts."""
    if not url:
        return DEFAULT_SCOPE
    try:
        host = urlsplit(str(url)).hostname
    except ValueError:
        return DEFAULT_SCOPE
    return (scope_for_host(host) if host else None) or DEFAULT_SCOPE
