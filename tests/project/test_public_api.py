"""The public surface: names, optional dependencies, the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import azure_ad_token_auth
from conftest import child_pythonpath

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_all_is_pinned() -> None:
    assert sorted(azure_ad_token_auth.__all__) == sorted(
        [
            "DEFAULT_SCOPE",
            "AsyncCachedCredential",
            "AsyncTokenProvider",
            "AzureADTokenAuth",
            "AzureADTokenAuthError",
            "CacheOptions",
            "CacheStatus",
            "CachedCredential",
            "CachedToken",
            "ConfigurationError",
            "ConfigurationTypeError",
            "CredentialHeaderFilter",
            "InsecureTransportError",
            "InvalidTokenError",
            "MissingExtraError",
            "TokenAcquisitionTimeout",
            "TokenCache",
            "TokenProvider",
            "TokenRefresh",
            "TokenRejectedError",
            "UnsupportedVersionError",
            "UsageError",
            "WrongClientError",
            "__version__",
            "async_azure_openai_client",
            "async_token_provider",
            "azure_openai_client",
            "fingerprint",
            "install_openai_session",
            "token_provider",
            "uninstall_openai_session",
        ]
    )
    for name in azure_ad_token_auth.__all__:
        assert getattr(azure_ad_token_auth, name) is not None
    assert azure_ad_token_auth.DEFAULT_SCOPE == "https://cognitiveservices.azure.com/.default"
    assert issubclass(azure_ad_token_auth.TokenRefresh, azure_ad_token_auth.AzureADTokenAuth)


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


MISSING_EXTRA = """
import sys
for name in {missing!r}:
    sys.modules[name] = None  # as if not installed: `import name` raises ModuleNotFoundError
try:
    {statement}
except ImportError as error:
    from azure_ad_token_auth import AzureADTokenAuthError
    assert isinstance(error, ModuleNotFoundError) and isinstance(error, AzureADTokenAuthError), type(error)
    assert isinstance(error.__cause__, ModuleNotFoundError), repr(error.__cause__)
    print("MESSAGE", error)
else:
    print("NO ERROR")
"""


@pytest.mark.parametrize(
    ("statement", "missing", "extra"),
    [
        ("import azure_ad_token_auth.httpx", ["httpx"], "httpx"),
        ("import azure_ad_token_auth.httpx2", ["httpx2"], "httpx2"),
        ("import azure_ad_token_auth.aiohttp", ["aiohttp"], "aiohttp"),
        ("from azure_ad_token_auth import install_openai_session; install_openai_session()", ["openai"], "openai"),
    ],
)
def test_a_missing_extra_names_the_pip_install_that_brings_it(statement: str, missing: list[str], extra: str) -> None:
    """In the `no_extras` session the packages are really absent; elsewhere they are hidden."""
    code = MISSING_EXTRA.format(missing=missing, statement=statement)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f'pip install "azure-ad-token-auth[{extra}]"' in result.stdout
    assert missing[0] in result.stdout  # the original error's text stays in the message


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


def test_the_async_extra_installs_what_azure_identity_aio_needs() -> None:
    """`pip install "azure-ad-token-auth[async]"` is all `AsyncAzureOpenAI` with an
    `azure.identity.aio` credential needs: openai, and aiohttp (azure-core's async transport)."""
    from packaging.requirements import Requirement

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")

    extras = tomllib.loads((Path(SRC).parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {Requirement(text).name: str(Requirement(text).specifier) for text in extras["async"]}
    assert set(wanted) == {"openai", "aiohttp"}
    # The same minimums as the single extras: the `lowest` session pins every extra's minimum.
    for name in wanted:
        (same,) = [str(Requirement(text).specifier) for text in extras[name]]
        assert wanted[name] == same
    # And aiohttp is what azure.identity.aio fails without.
    code = """
import asyncio, sys
sys.modules["aiohttp"] = None
from azure_ad_token_auth.testing import ManagedIdentityEndpoint
with ManagedIdentityEndpoint() as mi, mi.patched_env():
    from azure.identity.aio import ManagedIdentityCredential
    async def main():
        async with ManagedIdentityCredential() as credential:
            await credential.get_token("https://cognitiveservices.azure.com/.default")
    try:
        asyncio.run(main())
    except ImportError as error:
        print("IMPORT ERROR", error)
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": child_pythonpath(SRC)},
        timeout=60,
    )
    assert "IMPORT ERROR" in result.stdout and "aiohttp" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("package", ["azure_ad_token_auth", "azure_ad_token_auth.testing"])
def test_what_type_checkers_see_is_what_runs(package: str) -> None:
    """The public names are imported on first use (`_lazy`); type checkers read the package's
    `if TYPE_CHECKING:` imports instead: both name the same objects, and every one in `__all__`."""
    import ast
    import importlib

    module = importlib.import_module(package)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    static = {
        alias.name: node.module for node in guarded.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert sorted([*static, *(["__version__"] if "__version__" in module.__all__ else [])]) == sorted(module.__all__)
    for name, home in static.items():
        assert getattr(module, name) is getattr(importlib.import_module(f".{home}", package), name), name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        module.NoSuchName
