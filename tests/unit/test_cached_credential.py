"""`CachedCredential`: an azure-core credential over the shared caches (sync form)."""

from __future__ import annotations

import time

from azure_ad_token_auth import TokenCache
from azure_ad_token_auth.testing import FakeCredential


def test_the_caches_get_cached_token_hands_out_the_token_with_its_times(clock, fake: FakeCredential) -> None:
    cache = TokenCache(fake)
    entry = cache.get_cached_token()
    assert (entry.token, entry.expires_on, entry.refresh_at) == (
        fake.tokens[0],
        time.time() + 3600,
        time.time() + 3300,
    )
    assert cache.get_cached_token() is entry and fake.calls == 1
