"""The providers' per-call cost as openai calls them, in this process's openai: a child of
`providers` (one per openai measured), printing JSON.

    python -m benchmarks._provider_cost ROUNDS CALLS

openai asks a provider for the token on every request, from the client's own method
(`AzureOpenAI._get_azure_ad_token()`, awaited on `AsyncAzureOpenAI`): each contender is timed
through that call, and so is the floor, a provider returning a fixed string. Beside this
library's providers, the shapes they could have had: a class with `__call__` (sync), a plain
`async def` that never asks for a running loop (async); and azure-identity's
`get_bearer_token_provider` (sync and `azure.identity.aio`), asked the same way.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from azure.identity import get_bearer_token_provider
from azure.identity.aio import get_bearer_token_provider as aio_get_bearer_token_provider

from ._base import interleaved, median, paired_ratio, perf_ns, rotated
from ._contenders import ENDPOINT, FIXED, SCOPE, fake_async_credential, fake_credential, lib

TOKEN = FIXED[len("Bearer ") :]
API_VERSION = "2024-10-21"
_now = time.time


class ClassProvider:
    """The sync provider's body as a class with `__call__` (the shape measured against a closure)."""

    __slots__ = ("cache",)

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def __call__(self) -> str:
        entry = self.cache.current
        if entry is not None and _now() < entry.refresh_at:
            return str(entry.token)
        return str(self.cache.get_token())


def plain_async(cache: Any) -> Callable[[], Awaitable[str]]:
    """The async provider's body as a plain `async def`: no check of a running loop."""

    async def provider() -> str:
        entry = cache.current
        if entry is not None and _now() < entry.refresh_at:
            return str(entry.token)
        return str(await cache.get_token_async())

    return provider


# The garbage collector stays off for the whole child (see `main`): collecting before each
# measurement, as the other scenarios do, walks openai's whole object graph every time.


def per_call_ns(call: Callable[[], Any], calls: int) -> float:
    start = perf_ns()
    for _ in range(calls):
        call()
    return (perf_ns() - start) / calls


async def per_await_ns(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    start = perf_ns()
    for _ in range(calls):
        await call()
    return (perf_ns() - start) / calls


def sync_samples(rounds: int, calls: int) -> dict[str, list[float]]:
    from openai import AzureOpenAI

    provider = lib.token_provider(fake_credential(), SCOPE, endpoint=ENDPOINT)
    providers: dict[str, Callable[[], str]] = {
        "floor": lambda: TOKEN,
        "provider": provider,
        "class": ClassProvider(provider.cache),
        "azid": get_bearer_token_provider(fake_credential(), SCOPE),
    }
    asks = {
        kind: AzureOpenAI(
            azure_endpoint=ENDPOINT, api_version=API_VERSION, azure_ad_token_provider=p
        )._get_azure_ad_token
        for kind, p in providers.items()
    }
    for ask in asks.values():  # warm up: the cache holds its token
        per_call_ns(ask, calls // 10)
    return interleaved({kind: functools.partial(per_call_ns, ask, calls) for kind, ask in asks.items()}, rounds)


async def async_samples(rounds: int, calls: int) -> dict[str, list[float]]:
    from openai import AsyncAzureOpenAI

    async def floor() -> str:
        return TOKEN

    provider = lib.async_token_provider(fake_async_credential(), SCOPE, endpoint=ENDPOINT)
    providers: dict[str, Callable[[], Awaitable[str]]] = {
        "floor": floor,
        "provider": provider,
        "plain": plain_async(provider.cache),
        "azid": aio_get_bearer_token_provider(fake_async_credential(), SCOPE),
    }
    asks = {
        kind: AsyncAzureOpenAI(
            azure_endpoint=ENDPOINT, api_version=API_VERSION, azure_ad_token_provider=p
        )._get_azure_ad_token
        for kind, p in providers.items()
    }
    for ask in asks.values():
        await per_await_ns(ask, calls // 10)
    samples: dict[str, list[float]] = {kind: [] for kind in asks}
    for r in range(rounds):
        for kind in rotated(list(asks), r):
            samples[kind].append(await per_await_ns(asks[kind], calls))
    return samples


def summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Each contender's median ns and its paired ratio to the floor."""
    return {
        kind: {"ns": median(values), "ratio": paired_ratio(samples, kind, "floor")} for kind, values in samples.items()
    }


def main(argv: list[str]) -> int:
    import openai

    rounds, calls = int(argv[0]), int(argv[1])
    gc.collect()
    gc.freeze()  # what exists now (openai's modules) is never scanned again
    gc.disable()
    result = {
        "openai": openai.__version__,
        "python": sys.version.split()[0],
        "sync": summary(sync_samples(rounds, calls)),
        "async": summary(asyncio.run(async_samples(rounds, calls))),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
