"""`reset()`: each test starts from a clean world, whatever the application built at import time."""

from __future__ import annotations

from .. import _reset

__all__ = ["reset"]


def reset() -> None:
    """Forget every token and all credential state the library holds, keeping the objects
    your code built: as in a new process that has already run your imports.

    For every adapter, provider, `TokenCache`, `CachedCredential` and Redis or PostgreSQL
    provider alive now, those your modules built at import time included:

    - no token, held error or backoff; counts start over (`status()`);
    - the `DefaultAzureCredential` the library made for `credential=None` is closed, and the
      next token comes from a new one, made from the environment of that moment (your test's
      stand-ins, so their addresses, not an earlier test's);
    - keep-fresh timers and Redis renewal watches fetch nothing until the cache is next
      asked for a token (a reset between tests must not reach for the machine's identity);
      `prefetch` does not run again;
    - the one-per-process warnings (`token_provider()` made without an endpoint) warn again.

    Caches stay shared as they were: adapters and providers built with the same credential
    and options still draw from one cache, as in production.

    Kept, because they are yours: a credential you made and passed in. An azure-identity
    credential keeps its own token cache, and the environment it read when made (a
    `ManagedIdentityCredential` the endpoint's address): make it inside the test or a fixture
    that uses the stand-ins, or leave `credential=None` and let the library make it. Also
    kept: the files of a `shared_cache` directory (give each test its own, e.g. `tmp_path`).

    The kit's pytest fixtures call it before and after each test that uses any of them; call
    it yourself in fixtures of your own, between tests: a request in flight meanwhile may
    still get a token of before.
    """
    _reset.reset_all()
