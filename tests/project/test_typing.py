"""What a type checker tells a user of the package (mypy --strict over a user's script)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

SRC = str(Path(__file__).resolve().parents[2] / "src")

USER_SCRIPT = textwrap.dedent(
    """
    from azure_ad_token_auth import AzureADTokenAuth, TokenCache, install_openai_session, token_provider
    from azure_ad_token_auth.aiohttp import client_session

    install_openai_session(refresh_margn=300)
    TokenCache(None, refresh_margin="300")
    AzureADTokenAuth(timout=3)
    token_provider(keep_fresh=True, jiter=1.0)
    client_session(headres={})
    client_session(headers={}, refresh_margin=1.0, allow_http=True, allowed_hosts=["*.openai.azure.com"])
    install_openai_session(refresh_margin=300, allowed_hosts=["*.openai.azure.com"], shared_cache=True)
    """
)


def test_misspelled_or_mistyped_options_fail_mypy_strict_in_a_users_script(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "user.py",
        ],
        cwd=tmp_path,
        env={"MYPYPATH": SRC, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [
        'user.py:5: error: Unexpected keyword argument "refresh_margn" for "install_openai_session"; '
        'did you mean "refresh_margin"?  [call-arg]',
        'user.py:6: error: Argument "refresh_margin" to "TokenCache" has incompatible type "str"; '
        'expected "float"  [arg-type]',
        'user.py:7: error: Unexpected keyword argument "timout" for "AzureADTokenAuth"; did you mean "timeout"?  '
        "[call-arg]",
        'user.py:8: error: Unexpected keyword argument "jiter" for "token_provider"; did you mean "jitter"?  '
        "[call-arg]",
        'user.py:9: error: Unexpected keyword argument "headres" for "client_session"; did you mean "headers"?  '
        "[call-arg]",
    ], done.stdout + done.stderr
