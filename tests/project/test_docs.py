"""The fault table names tests that exist, so it cannot rot."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_in_the_fault_table_exists() -> None:
    table = (ROOT / "docs" / "faults.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)
    assert len(named) >= 40
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []


def test_the_timeline_svg_is_its_scripts_output() -> None:
    spec = importlib.util.spec_from_file_location("timeline", ROOT / "docs" / "_scripts" / "timeline.py")
    assert spec is not None and spec.loader is not None
    timeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timeline)
    committed = (ROOT / "docs" / "img" / "token-timeline.svg").read_text(encoding="utf-8")
    assert committed == timeline.render()
    assert "img/token-timeline.svg" in (ROOT / "docs" / "refresh.md").read_text(encoding="utf-8")


def test_every_docs_page_is_in_the_site_navigation() -> None:
    """mkdocs --strict checks this too, but only where mkdocs is installed (the docs session)."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s+([\w/-]+\.md)\s*$", config, re.MULTILINE))
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert listed == pages
    for page in ("openai", "cookbook", "requests", "httpx", "aiohttp", "sharing", "refresh", "credentials"):
        assert f"{page}.md" in pages
    for page in ("clouds", "security", "faults", "inspector", "testing", "benchmarks", "troubleshooting"):
        assert f"{page}.md" in pages
    assert {"contributing.md", "reference.md"} <= pages
    assert "::: azure_ad_token_auth\n" in (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")


def test_readme_links_to_docs_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\((docs/[\w-]+\.md)(?:#[\w-]+)?\)", readme)
    assert len(linked) >= 15
    assert [link for link in linked if not (ROOT / link).exists()] == []
