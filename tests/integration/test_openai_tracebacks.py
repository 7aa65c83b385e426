"""What an error tracker rendering a traceback's locals (`capture_locals=True`, as Sentry's
`include_local_variables` does) finds in this package's frames on the openai paths: no token.

openai's own frames hold the request's headers (`FinalRequestOptions`), token included;
that is openai's, and docs/security.md gives the Sentry settings for it.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import azure_ad_token_auth
from azure_ad_token_auth import InsecureTransportError, azure_openai_client, install_openai_session, token_provider
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential
from conftest import Clock
from openai_helpers import (
    API_VERSION,
    OPENAI_VERSION,
    openai,
    openai_httpx,
    openai_settings,  # noqa: F401 - the fixture every test uses
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]
OURS = str(Path(azure_ad_token_auth.__file__).parent)


def _rendered_frames(error: BaseException) -> Iterator[traceback.FrameSummary]:
    """Every frame of `error` and of the errors chained to it, locals rendered by repr."""
    seen: traceback.TracebackException | None = traceback.TracebackException.from_exception(error, capture_locals=True)
    while seen is not None:
        yield from seen.stack
        seen = seen.__cause__ or seen.__context__


def our_frames(error: BaseException, token: str) -> tuple[list[str], list[str]]:
    """This package's frames in `error`'s traceback, and those whose rendered locals show `token`."""
    ours = [frame for frame in _rendered_frames(error) if frame.filename.startswith(OURS)]
    showing = [
        f"{frame.name}.{name}" for frame in ours for name, value in (frame.locals or {}).items() if token in value
    ]
    return [frame.name for frame in ours], showing


@pytest.mark.skipif(OPENAI_VERSION < (1, 17), reason="azure_openai_client needs openai >= 1.17")
def test_a_refused_request_of_azure_openai_client_leaves_no_token_in_our_frames(server: AzureOpenAIStandIn) -> None:
    credential = FakeCredential()
    client = azure_openai_client(
        server.base_url,
        api_version=API_VERSION,
        credential=credential,
        allow_http=True,
        client_options={"max_retries": 0},
    )
    with pytest.raises((InsecureTransportError, openai.APIConnectionError)) as caught:
        client.get("https://elsewhere.invalid/x", cast_to=object)  # openai has put the token in it
    assert credential.calls == 1 and server.count == 0
    frames, showing = our_frames(caught.value, credential.tokens[0])
    assert "check_url" in frames and showing == []


def test_a_provider_failing_after_its_token_expired_leaves_no_token_in_our_frames(clock: Clock) -> None:
    credential = FakeCredential(lifetime=600)
    provider = token_provider(credential, endpoint="https://res.openai.azure.com")
    token = provider()
    clock.shift(3600)  # expired: the provider asks the credential, which fails
    credential.fail = RuntimeError("the identity endpoint is down")
    with pytest.raises(RuntimeError) as caught:
        provider()
    frames, showing = our_frames(caught.value, token)
    assert "token_provider" in frames and showing == []


def test_the_request_check_on_your_own_http_client_leaves_no_token_in_our_frames(server: AzureOpenAIStandIn) -> None:
    credential = FakeCredential()
    with openai_httpx().Client() as own:
        openai.http_client = own
        install_openai_session(credential)
        openai.azure_endpoint = "https://res.openai.azure.com"
        token = openai.azure_ad_token_provider()  # what openai calls first: the check goes on `own`
        with pytest.raises(InsecureTransportError) as caught:
            own.get(server.base_url + "/echo", headers={"api-key": token})  # plain http, no allow_http
    frames, showing = our_frames(caught.value, token)
    assert "__call__" in frames and showing == []
    assert server.count == 0
