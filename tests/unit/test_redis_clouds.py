"""The Redis rows of the cloud rules: Azure Cache for Redis and Azure Managed Redis hosts per cloud."""

from __future__ import annotations

import pytest

from azure_ad_token_auth._clouds import CHINA, PUBLIC, RULES, SERVICES, scope_for_host, scope_for_url

REDIS = "https://redis.azure.com/.default"


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("mycache.redis.cache.windows.net", REDIS),  # Azure Cache for Redis
        ("MyCache.Redis.Cache.Windows.Net.", REDIS),  # any case, trailing dot
        ("mycache.westeurope.redis.azure.net", REDIS),  # Azure Managed Redis
        ("mycache.redis.cache.chinacloudapi.cn", REDIS),  # Azure China documents the same scope
        ("redis.cache.windows.net", None),  # a suffix alone is no cache
        ("mycache.redis.cache.usgovcloudapi.net", None),  # Azure Government documents no scope
        ("localhost", None),
    ],
)
def test_a_redis_hosts_scope_follows_its_documented_cloud(host: str, scope: str | None) -> None:
    assert scope_for_host(host, "redis") == scope
    assert scope_for_host(host) is None  # no openai rule claims a Redis host


def test_redis_rules_name_their_microsoft_source_and_cloud() -> None:
    rules = [rule for rule in RULES if rule.service == "redis"]
    assert {rule.cloud for rule in rules} == {PUBLIC, CHINA}
    for rule in rules:
        assert rule.source.startswith(("https://learn.microsoft.com/", "https://docs.azure.cn/"))
        assert rule.scope == REDIS and rule.path == ""
    assert SERVICES["redis"] == REDIS
    assert scope_for_url("https://anything.example", "redis") == REDIS  # an unknown host: the default
