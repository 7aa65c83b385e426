"""The demo's refusals of bad arguments: a clear line on stderr, exit status 2, nothing run."""

from __future__ import annotations

import sys

import pytest

from azure_ad_token_auth._cli import main


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--endpoint", "https://res.openai.azure.com"], "--deployment"),
        (["--requests", "0"], "--requests"),
    ],
)
def test_bad_demo_arguments_are_refused_before_anything_runs(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openai")
    assert main(["demo", *args]) == 2
    out, err = capsys.readouterr()
    assert says in err and "Traceback" not in err
    assert out == ""  # no stand-in started, no request made


def test_the_demo_without_openai_names_the_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai -> ImportError
    assert main(["demo"]) == 2
    out, err = capsys.readouterr()
    assert "pip install" in err and "openai" in err
    assert "Traceback" not in err and "Azure OpenAI" not in out  # stopped before any stand-in
