"""Which scope an endpoint needs: the rules per service and Azure cloud, as data.

An Entra ID token is issued for one audience. Azure OpenAI, Cognitive Services and AI
Foundry resources accept a token for the Cognitive Services resource of their own cloud
only (a public-cloud token on an Azure Government endpoint fails with an invalid
audience), and a Foundry *project* endpoint (`/api/projects/...`) wants the Foundry
audience instead. Each other Entra consumer of an app (Redis, PostgreSQL, Azure SQL)
has its own audience per cloud. When the caller gives no scopes, the scope follows the
endpoint's host (and, where a rule names one, its path); a host no rule knows keeps the
service's public-cloud default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_SCOPE",
    "POSTGRES_SCOPE",
    "RULES",
    "SERVICES",
    "SOVEREIGN_DOMAINS",
    "SQL_SCOPE",
    "Rule",
    "foreign_scope",
    "rule_for_url",
    "scope_depends_on_path",
    "scope_for_host",
    "scope_for_url",
    "sovereign_cloud",
]

DEFAULT_SCOPE = "https://cognitiveservices.azure.com/.default"
_GOVERNMENT = "https://cognitiveservices.azure.us/.default"
_CHINA = "https://cognitiveservices.azure.cn/.default"
_FOUNDRY = "https://ai.azure.com/.default"
_FOUNDRY_GOVERNMENT = "https://ai.azure.us/.default"
_PROJECTS = "/api/projects/"
_REDIS = "https://redis.azure.com/.default"

PUBLIC, GOVERNMENT, CHINA = "Azure public cloud", "Azure Government", "Azure China"


class Rule(NamedTuple):
    """A host suffix (and path prefix, `""` for any path) and the scope it gets."""

    service: str
    """The family of endpoints the rule is for: `"openai"` (Azure OpenAI, AI services,
    Foundry), `"redis"`, `"postgres"`, `"sql"`."""
    suffix: str
    """The host ends with this, with a name in front of it (`openai.azure.us` alone matches nothing)."""
    path: str
    """The URL's path starts with this (`""`: any path)."""
    cloud: str
    scope: str
    source: str
    """The Microsoft documentation the rule is taken from."""


_AOAI_DOCS = "https://learn.microsoft.com/azure/ai-services/openai/how-to/managed-identity"
_GOV_DOCS = "https://learn.microsoft.com/azure/azure-government/documentation-government-cognitiveservices"
_FOUNDRY_DOCS = "https://learn.microsoft.com/azure/foundry/concepts/foundry-azure-government"
# Azure SQL (Database, Managed Instance): the resource per cloud is listed by Entra ID's
# managed-identity docs, the host suffixes by each sovereign cloud's developer guide.
_SQL_RESOURCES_DOCS = (
    "https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/managed-identities-status"
)
_SQL_GOV_DOCS = "https://learn.microsoft.com/azure/azure-government/compare-azure-government-global-azure"
_SQL_CHINA_DOCS = "https://learn.microsoft.com/azure/china/resources-developer-guide"
SQL_SCOPE = "https://database.windows.net/.default"
_SQL_GOVERNMENT = "https://database.usgovcloudapi.net/.default"
_SQL_CHINA = "https://database.chinacloudapi.cn/.default"
_REDIS_DOCS = "https://learn.microsoft.com/azure/azure-cache-for-redis/cache-azure-active-directory-for-authentication"
_MANAGED_REDIS_DOCS = "https://learn.microsoft.com/azure/redis/entra-for-authentication"
_REDIS_CHINA_DOCS = "https://docs.azure.cn/azure-cache-for-redis/cache-azure-active-directory-for-authentication"

# Azure Database for PostgreSQL (flexible server): every cloud's servers take tokens for
# its "OSS RDBMS" resource (`az cloud show` lists it as `ossrdbmsResourceId`).
POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
_POSTGRES_GOVERNMENT = "https://ossrdbms-aad.database.usgovcloudapi.net/.default"
_POSTGRES_CHINA = "https://ossrdbms-aad.database.chinacloudapi.cn/.default"
_POSTGRES_DOCS = "https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-connect-with-managed-identity"
_POSTGRES_GOV_DOCS = "https://learn.microsoft.com/azure/azure-government/compare-azure-government-global-azure"
_POSTGRES_CHINA_DOCS = "https://learn.microsoft.com/azure/private-link/private-endpoint-dns"

RULES: tuple[Rule, ...] = (
    # The first rule that matches wins: path rules come before their host's catch-all.
    Rule("openai", ".services.ai.azure.com", _PROJECTS, PUBLIC, _FOUNDRY, _FOUNDRY_DOCS),
    Rule("openai", ".services.ai.azure.us", _PROJECTS, GOVERNMENT, _FOUNDRY_GOVERNMENT, _FOUNDRY_DOCS),
    Rule("openai", ".openai.azure.com", "", PUBLIC, DEFAULT_SCOPE, _AOAI_DOCS),
    Rule("openai", ".cognitiveservices.azure.com", "", PUBLIC, DEFAULT_SCOPE, _AOAI_DOCS),
    Rule("openai", ".services.ai.azure.com", "", PUBLIC, DEFAULT_SCOPE, _AOAI_DOCS),
    Rule("openai", ".ai.azure.com", "", PUBLIC, DEFAULT_SCOPE, _AOAI_DOCS),
    Rule("openai", ".openai.azure.us", "", GOVERNMENT, _GOVERNMENT, _GOV_DOCS),
    Rule("openai", ".cognitiveservices.azure.us", "", GOVERNMENT, _GOVERNMENT, _GOV_DOCS),
    Rule("openai", ".services.ai.azure.us", "", GOVERNMENT, _GOVERNMENT, _FOUNDRY_DOCS),
    Rule("openai", ".openai.azure.cn", "", CHINA, _CHINA, _GOV_DOCS),
    Rule("openai", ".cognitiveservices.azure.cn", "", CHINA, _CHINA, _GOV_DOCS),
    Rule("sql", ".database.windows.net", "", PUBLIC, SQL_SCOPE, _SQL_RESOURCES_DOCS),
    Rule("sql", ".database.usgovcloudapi.net", "", GOVERNMENT, _SQL_GOVERNMENT, _SQL_GOV_DOCS),
    Rule("sql", ".database.chinacloudapi.cn", "", CHINA, _SQL_CHINA, _SQL_CHINA_DOCS),
    # Azure Cache for Redis (<name>.redis.cache.windows.net) and Azure Managed Redis
    # (<name>.<region>.redis.azure.net). Azure China documents the public cloud's scope; Azure
    # Government documents none, so its hosts get no rule (docs/redis.md says so).
    Rule("redis", ".redis.cache.windows.net", "", PUBLIC, _REDIS, _REDIS_DOCS),
    Rule("redis", ".redis.azure.net", "", PUBLIC, _REDIS, _MANAGED_REDIS_DOCS),
    Rule("redis", ".redis.cache.chinacloudapi.cn", "", CHINA, _REDIS, _REDIS_CHINA_DOCS),
    # A private endpoint's name (`<server>.privatelink.postgres.database.azure.com`) ends the same way.
    Rule("postgres", ".postgres.database.azure.com", "", PUBLIC, POSTGRES_SCOPE, _POSTGRES_DOCS),
    Rule("postgres", ".postgres.database.usgovcloudapi.net", "", GOVERNMENT, _POSTGRES_GOVERNMENT, _POSTGRES_GOV_DOCS),
    Rule("postgres", ".postgres.database.chinacloudapi.cn", "", CHINA, _POSTGRES_CHINA, _POSTGRES_CHINA_DOCS),
)
"""The rules, in the order they are tried; docs/clouds.md lists them."""

SERVICES: dict[str, str] = {"openai": DEFAULT_SCOPE, "sql": SQL_SCOPE, "redis": _REDIS, "postgres": POSTGRES_SCOPE}
"""Each service's scope for a host no rule knows (its public-cloud scope)."""

# The DNS domains of the sovereign clouds' service endpoints (each cloud's developer guide,
# `_SQL_GOV_DOCS`, `_SQL_CHINA_DOCS`): a host under one is no public-cloud host, so where
# no rule knows it, the public scope would be a guess, and a wrong one.
SOVEREIGN_DOMAINS: dict[str, str] = {
    "usgovcloudapi.net": GOVERNMENT,
    "usgovcloudapp.net": GOVERNMENT,
    "azure.us": GOVERNMENT,
    "chinacloudapi.cn": CHINA,
    "chinacloudapp.cn": CHINA,
    "azure.cn": CHINA,
}

# Host suffixes with a path rule: a URL's scope there depends on more than its origin.
_PATH_SUFFIXES = tuple({rule.suffix for rule in RULES if rule.path})


def _matches(rule: Rule, name: str, path: str) -> bool:
    return name.endswith(rule.suffix) and len(name) > len(rule.suffix) and path.startswith(rule.path)


def rule_for_url(url: str | None, service: str = "openai") -> Rule | None:
    """The first rule of `service` matching `url`'s host and path, or None."""
    if not url:
        return None
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    name = host.lower().rstrip(".")
    path = parts.path or "/"
    for rule in RULES:
        if rule.service == service and _matches(rule, name, path):
            return rule
    return None


def scope_for_host(host: str, service: str = "openai") -> str | None:
    """The scope a rule for any path gives `host` (a DNS name, any case, trailing dot allowed), or None."""
    name = host.lower().rstrip(".")
    for rule in RULES:
        if rule.service == service and not rule.path and _matches(rule, name, "/"):
            return rule.scope
    return None


def sovereign_cloud(host: str) -> str | None:
    """The sovereign cloud whose domain `host` is under (`GOVERNMENT`, `CHINA`), or None."""
    name = host.lower().rstrip(".")
    for domain, cloud in SOVEREIGN_DOMAINS.items():
        if name.endswith("." + domain):
            return cloud
    return None


def foreign_scope(scopes: object, service: str) -> tuple[str, str] | None:
    """The first of `scopes` (a str or a sequence of them) that is another service's scope
    and never `service`'s, with that other service's name; None if there is none."""
    given = [scopes] if isinstance(scopes, str) else list(scopes) if isinstance(scopes, Sequence) else []
    own = {_resource(rule.scope) for rule in RULES if rule.service == service} | {_resource(SERVICES[service])}
    others = {_resource(rule.scope): rule.service for rule in RULES if rule.service != service}
    others.update({_resource(scope): name for name, scope in SERVICES.items() if name != service})
    for scope in given:
        if isinstance(scope, str) and (resource := _resource(scope)) in others and resource not in own:
            return scope, others[resource]
    return None


def _resource(scope: str) -> str:
    """The resource a scope names, as Entra ID compares it: `HTTPS://X.net//.default ` is `https://x.net`."""
    return scope.strip().lower().removesuffix("/.default").rstrip("/")


def scope_for_url(url: str | None, service: str = "openai") -> str:
    """The scope for requests to `url`: its rule's, or the service's default for unknown hosts."""
    rule = rule_for_url(url, service)
    return rule.scope if rule is not None else SERVICES[service]


def scope_depends_on_path(url: str) -> bool:
    """Whether URLs of `url`'s origin may need different scopes by path (a Foundry host):
    a per-origin memo of the scope must not cover them."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return bool(host) and host.lower().rstrip(".").endswith(_PATH_SUFFIXES)  # type: ignore[union-attr]
