"""Who gets each new token, and where their callbacks run (`_subscribers`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest

from azure_ad_token_auth._subscribers import Subscribers
from conftest import wait_until


class Client:
    """Stands for a redis-py client: it registers a bound method, as redis-py does."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def re_auth(self, token: str) -> None:
        self.tokens.append(token)
        self.threads.append(threading.current_thread())

    def raise_on_error(self, error: BaseException) -> None:
        self.errors.append(error)
        raise RuntimeError("redis-py's on_error callbacks raise")


class AsyncClient:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.errors: list[BaseException] = []

    async def re_auth(self, token: str) -> None:
        self.tokens.append(token)
        self.loops.append(asyncio.get_running_loop())

    async def raise_on_error(self, error: BaseException) -> None:
        self.errors.append(error)
        raise RuntimeError("as redis-py's do")


def test_a_sync_clients_callback_runs_in_a_thread_of_its_own() -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    client = Client()
    subscribers.add(client.re_auth)
    subscribers.publish("t1")
    wait_until(lambda: client.tokens == ["t1"])
    assert client.threads[0] is not threading.current_thread()


async def test_an_async_clients_callback_runs_on_the_loop_it_registered_from() -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    client = AsyncClient()
    subscribers.add(client.re_auth)
    loop = asyncio.get_running_loop()
    # Published from another thread, as the renewal thread does.
    threading.Thread(target=subscribers.publish, args=("t1",)).start()
    for _ in range(500):
        if client.tokens:
            break
        await asyncio.sleep(0.01)
    assert client.tokens == ["t1"] and client.loops == [loop]


def test_an_async_client_built_outside_any_loop_gets_tokens_on_the_first_loop_that_asks() -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    client = AsyncClient()
    subscribers.add(client.re_auth)  # no loop running: redis.asyncio.Redis(...) at import time
    subscribers.publish("before any connection")  # nothing to re-authenticate yet

    async def main() -> asyncio.AbstractEventLoop:
        subscribers.bind(asyncio.get_running_loop())  # what get_credentials_async does
        threading.Thread(target=subscribers.publish, args=("t2",)).start()
        while not client.tokens:
            await asyncio.sleep(0.01)
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert client.tokens == ["t2"] and client.loops == [loop]

    async def later() -> None:  # that loop closed; a later one asking takes over
        subscribers.bind(asyncio.get_running_loop())
        threading.Thread(target=subscribers.publish, args=("t3",)).start()
        while len(client.tokens) < 2:
            await asyncio.sleep(0.01)

    asyncio.run(later())
    assert client.tokens == ["t2", "t3"] and client.loops[1] is not loop


def test_a_stuck_callback_holds_up_no_other_client_and_gets_only_the_newest_token_after() -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    release, entered = threading.Event(), threading.Event()
    stuck_tokens: list[str] = []

    class Stuck:
        def re_auth(self, token: str) -> None:  # a pool whose lock another thread holds
            stuck_tokens.append(token)
            entered.set()
            release.wait(10)

    stuck, other = Stuck(), Client()
    subscribers.add(stuck.re_auth)
    subscribers.add(other.re_auth)
    subscribers.publish("t1")
    entered.wait(5)
    for token in ("t2", "t3", "t4"):
        subscribers.publish(token)
    wait_until(lambda: other.tokens[-1:] == ["t4"])
    assert stuck_tokens == ["t1"]
    release.set()
    wait_until(lambda: stuck_tokens == ["t1", "t4"])  # t2 and t3 were superseded while it was stuck


def test_a_client_that_is_gone_drops_out_and_the_same_callback_counts_once() -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    kept, gone = Client(), Client()
    subscribers.add(kept.re_auth)
    subscribers.add(kept.re_auth)
    subscribers.add(gone.re_auth)
    assert len(subscribers) == 2
    del gone
    gc.collect()
    assert len(subscribers) == 1
    plain: list[str] = []
    subscribers.add(plain.append)  # a builtin method: its list holds it
    subscribers.add(lambda token: plain.append("lambda " + token))  # a function: held strongly
    gc.collect()
    subscribers.publish("t1")
    wait_until(lambda: sorted(plain) == ["lambda t1", "t1"] and kept.tokens == ["t1"])


def test_a_failing_callback_reaches_its_own_on_error_and_a_warning_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    failing, fine = Client(), Client()

    def refuse(token: str) -> None:
        raise ConnectionError(f"secret detail {token}")

    subscribers.add(refuse)
    subscribers.add_error(failing.raise_on_error)
    subscribers.add(fine.re_auth)
    subscribers.add_error(fine.raise_on_error)
    with caplog.at_level(logging.WARNING, logger="azure_ad_token_auth"):
        subscribers.publish("t1")
        wait_until(lambda: len(failing.errors) == 1 and fine.tokens == ["t1"])
    assert isinstance(failing.errors[0], ConnectionError)
    assert fine.errors == []
    assert "ConnectionError" in caplog.text and "secret detail" not in caplog.text


async def test_fail_tells_every_on_error_on_its_thread_or_loop() -> None:
    subscribers: Subscribers[str] = Subscribers("test")
    sync_client, async_client, orphan = Client(), AsyncClient(), Client()
    subscribers.add_error(orphan.raise_on_error)  # registered before any on_next
    subscribers.add(sync_client.re_auth)
    subscribers.add_error(sync_client.raise_on_error)
    subscribers.add(async_client.re_auth)
    subscribers.add_error(async_client.raise_on_error)
    error = TimeoutError("no token")
    threading.Thread(target=subscribers.fail, args=(error,)).start()
    for _ in range(500):
        if async_client.errors:
            break
        await asyncio.sleep(0.01)
    wait_until(lambda: sync_client.errors == [error] and orphan.errors == [error])
    assert async_client.errors == [error]


def test_a_sync_looking_callback_answering_with_a_coroutine_is_reported_and_its_coroutine_closed() -> None:
    from azure_ad_token_auth import UsageError

    subscribers: Subscribers[str] = Subscribers("test")
    client, errors = AsyncClient(), Client()
    subscribers.add(lambda token: client.re_auth(token))  # a wrapper hiding the coroutine function
    subscribers.add_error(errors.raise_on_error)
    subscribers.publish("t1")
    wait_until(lambda: len(errors.errors) == 1)
    assert isinstance(errors.errors[0], UsageError) and "register the coroutine function" in str(errors.errors[0])
    assert client.tokens == []  # its coroutine was closed, never run (no "never awaited" warning)
