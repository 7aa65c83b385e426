"""The public surface: names, optional dependencies, the console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import azure_ad_token_auth

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_all_is_pinned() -> None:
    assert sorted(azure_ad_token_auth.__all__) == sorted(
        [
            "DEFAULT_SCOPE",
            "AzureADTokenAuth",
            "AzureADTokenAuthError",
            "CacheOptions",
            "CacheStatus",
            "CachedToken",
            "ConfigurationError",
            "ConfigurationTypeError",
            "InsecureTransportError",
            "InvalidTokenError",
            "MissingExtraError",
            "TokenAcquisitionTimeout",
            "TokenCache",
            "TokenRefresh",
            "TokenRejectedError",
            "UnsupportedVersionError",
            "UsageError",
            "WrongClientError",
            "__version__",
            "async_token_provider",
            "fingerprint",
            "install_openai_session",
            "token_provider",
            "uninstall_openai_session",
        ]
    )
    for name in azure_ad_token_auth.__all__:
        assert getattr(azure_ad_token_auth, name) is not None
    assert azure_ad_token_auth.DEFAULT_SCOPE == "https://cognitiveservices.azure.com/.default"
    assert azure_ad_token_auth.TokenRefresh is azure_ad_token_auth.AzureADTokenAuth


BLOCK_EXTRAS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"openai", "httpx", "httpx2", "aiohttp"}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""


def test_package_and_requests_adapter_work_without_optional_extras() -> None:
    # The "core" test environment has none of them installed; this proves it anywhere.
    code = (
        BLOCK_EXTRAS
        + """
import requests
from azure_ad_token_auth import AzureADTokenAuth, token_provider
from azure_ad_token_auth.testing import FakeCredential
fake = FakeCredential()
prepared = AzureADTokenAuth(fake)(requests.Request("GET", "https://x.openai.azure.com/").prepare())
assert prepared.headers["Authorization"] == "Bearer " + fake.tokens[0]
assert token_provider(fake)() == fake.tokens[0]  # the same credential: the same cache
assert fake.calls == 1
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"openai", "httpx", "httpx2", "aiohttp"})
print("LOADED", loaded)
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_optional_modules_name_their_extra_when_missing() -> None:
    code = BLOCK_EXTRAS + "import azure_ad_token_auth.httpx"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC}, timeout=60
    )
    assert result.returncode != 0
    assert "httpx" in result.stderr


def test_console_entry_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "azure_ad_token_auth", "--version"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC},
        timeout=60,
    )
    assert result.returncode == 0
    assert azure_ad_token_auth.__version__ in result.stdout
