"""The scope follows the endpoint's cloud (`_clouds`)."""

from __future__ import annotations

import pytest

from azure_ad_token_auth._clouds import DEFAULT_SCOPE, scope_depends_on_path, scope_for_host, scope_for_url

PUBLIC = "https://cognitiveservices.azure.com/.default"
GOVERNMENT = "https://cognitiveservices.azure.us/.default"
CHINA = "https://cognitiveservices.azure.cn/.default"
FOUNDRY = "https://ai.azure.com/.default"
FOUNDRY_GOVERNMENT = "https://ai.azure.us/.default"


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
        # Foundry: a project endpoint wants the Foundry audience, the resource's own routes do not.
        ("https://acct.services.ai.azure.com/api/projects/proj/openai/v1/responses", FOUNDRY),
        ("https://ACCT.services.ai.azure.com/api/projects/proj", FOUNDRY),
        ("https://acct.services.ai.azure.com/models/chat/completions", PUBLIC),
        ("https://acct.services.ai.azure.com/openai/v1/", PUBLIC),
        ("https://acct.services.ai.azure.com/api/projectsx", PUBLIC),
        ("https://acct.services.ai.azure.us/api/projects/proj/agents", FOUNDRY_GOVERNMENT),
        ("https://acct.services.ai.azure.us/models", GOVERNMENT),
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


def test_a_foundry_host_s_scope_depends_on_the_path_and_no_other_host_s_does() -> None:
    assert scope_depends_on_path("https://acct.services.ai.azure.com/openai/v1/")
    assert scope_depends_on_path("https://acct.services.ai.azure.us/")
    assert not scope_depends_on_path("https://res.openai.azure.com/api/projects/p")
    assert not scope_depends_on_path("https://example.com/api/projects/p")
    assert not scope_depends_on_path("http://[::1")
    assert scope_for_url("https://res.openai.azure.com/api/projects/p") == PUBLIC  # a path rule is its host's only


SQL_PUBLIC = "https://database.windows.net/.default"


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("myserver.database.windows.net", SQL_PUBLIC),
        ("MyServer.Database.Windows.Net.", SQL_PUBLIC),
        ("mi-1.abc123def.database.windows.net", SQL_PUBLIC),  # a managed instance's DNS zone
        ("myserver.privatelink.database.windows.net", SQL_PUBLIC),
        ("myserver.database.usgovcloudapi.net", "https://database.usgovcloudapi.net/.default"),
        ("myserver.database.chinacloudapi.cn", "https://database.chinacloudapi.cn/.default"),
    ],
)
def test_azure_sql_hosts_get_their_clouds_database_scope(host: str, scope: str) -> None:
    assert scope_for_host(host, "sql") == scope
    assert scope_for_url(f"https://{host}:1433", "sql") == scope
    assert scope_for_host(host) is None  # an openai rule never claims a database host


def test_an_unknown_sql_host_gets_the_public_database_scope_and_openai_hosts_are_not_databases() -> None:
    assert scope_for_url("https://sql.example.com", "sql") == SQL_PUBLIC
    assert scope_for_host("database.windows.net", "sql") is None  # the suffix alone is no server
    assert scope_for_host("res.openai.azure.us", "sql") is None


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("myserver.postgres.database.azure.com", "https://ossrdbms-aad.database.windows.net/.default"),
        ("myserver.privatelink.postgres.database.azure.com.", "https://ossrdbms-aad.database.windows.net/.default"),
        ("MyServer.postgres.database.usgovcloudapi.net", "https://ossrdbms-aad.database.usgovcloudapi.net/.default"),
        ("myserver.postgres.database.chinacloudapi.cn", "https://ossrdbms-aad.database.chinacloudapi.cn/.default"),
    ],
)
def test_postgres_servers_get_their_clouds_ossrdbms_scope(host: str, scope: str) -> None:
    assert scope_for_host(host, "postgres") == scope
    assert scope_for_host(host) is None  # not an openai host
    assert scope_for_url(f"postgresql://{host}/db", "postgres") == scope


def test_postgres_hosts_no_rule_knows_keep_the_public_scope() -> None:
    assert scope_for_host("postgres.database.azure.com", "postgres") is None  # the suffix alone is no server
    assert (
        scope_for_url("postgresql://db.example.com", "postgres") == "https://ossrdbms-aad.database.windows.net/.default"
    )
