"""The benchmark's chart writer and docs block, on small fixed numbers (never on measured figures)."""

from __future__ import annotations

import importlib
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def charts(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks._charts")


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks._base")


def _bars(svg: str) -> list[ET.Element]:
    return [rect for rect in ET.fromstring(svg).iter(f"{SVG}rect") if rect.get("class") == "bar"]


def _texts(svg: str, cls: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == cls]


def test_bar_lengths_are_proportional_to_the_values(charts: ModuleType) -> None:
    group = charts.Group("g", [charts.Bar("a", 400), charts.Bar("b", 200, ours=True), charts.Bar("c", 100)])
    svg = charts.bar_chart("title", [group], unit="ns")
    widths = [float(rect.get("width") or 0) for rect in _bars(svg)]
    assert len(widths) == 3
    assert widths[0] > 0
    assert widths[1] == pytest.approx(widths[0] / 2, abs=0.1)
    assert widths[2] == pytest.approx(widths[0] / 4, abs=0.1)
    assert _texts(svg, "value") == ["400 ns", "200 ns", "100 ns"]
    assert _texts(svg, "label") == ["a", "b", "c"]
    fills = [rect.get("fill") for rect in _bars(svg)]
    assert fills[1] != fills[0] == fills[2]  # this library's bar stands out


def test_one_scale_across_groups(charts: ModuleType) -> None:
    svg = charts.bar_chart(
        "t", [charts.Group("one", [charts.Bar("a", 10)]), charts.Group("two", [charts.Bar("b", 40)])], unit="calls"
    )
    first, second = (float(rect.get("width") or 0) for rect in _bars(svg))
    assert second == pytest.approx(4 * first, abs=0.1)
    assert _texts(svg, "heading") == ["one", "two"]
    assert float(_bars(svg)[1].get("y") or 0) > float(_bars(svg)[0].get("y") or 0)  # groups stack downwards


def test_a_bar_beyond_the_clip_is_cut_and_keeps_its_value(charts: ModuleType) -> None:
    group = charts.Group("g", [charts.Bar("short", 50), charts.Bar("long", 15_500)])
    svg = charts.bar_chart("t", [group], unit="ns", clip=100)
    short, long = (float(rect.get("width") or 0) for rect in _bars(svg))
    assert long == pytest.approx(2 * short, abs=0.1)  # drawn to the clip, not to 15,500
    assert _texts(svg, "value") == ["50 ns", "15,500 ns"]
    breaks = [p for p in ET.fromstring(svg).iter(f"{SVG}path") if p.get("class") == "break"]
    assert len(breaks) == 1
    assert "longer bars cut" in "".join(_texts(svg, "axis"))


def test_labels_are_escaped(charts: ModuleType) -> None:
    svg = charts.bar_chart('a < b & "c"', [charts.Group("x & y", [charts.Bar("<script>", 1)])], unit="ns")
    root = ET.fromstring(svg)  # well-formed
    assert root.get("aria-label") == 'a < b & "c"'
    assert _texts(svg, "label") == ["<script>"]
    assert "<script>" not in svg


def _boxes(svg: str, charts: ModuleType) -> tuple[float, float, list[tuple[str, float, float, float, float]]]:
    """The chart's size, and each text's box (class, left, top, right, bottom) by the chart's own width estimate."""
    root = ET.fromstring(svg)
    sizes = {"title": charts.TITLE_SIZE, "axis": charts.AXIS_SIZE}
    boxes = []
    for text in root.iter(f"{SVG}text"):
        cls = text.get("class") or ""
        size = sizes.get(cls, charts.FONT_SIZE)
        width = charts.text_width(text.text or "", size, bold=cls in ("title", "heading"))
        x, y = float(text.get("x") or 0), float(text.get("y") or 0)
        left = x - width if cls == "label" else x  # labels are anchored at their end
        boxes.append((cls, left, y - size, left + width, y + size * 0.25))  # ascent to descent
    return float(root.get("width") or 0), float(root.get("height") or 0), boxes


def _misfits(svg: str, charts: ModuleType) -> list[str]:
    """Texts that run off the chart, overlap one another, or overlap a bar."""
    width, height, boxes = _boxes(svg, charts)
    rects = [
        (float(r.get("x") or 0), float(r.get("y") or 0), float(r.get("width") or 0), float(r.get("height") or 0))
        for r in _bars(svg)
    ]
    problems = [f"{cls} off the chart" for cls, left, top, right, bottom in boxes if left < 0 or top < 0]
    problems += [f"{cls} off the chart" for cls, left, top, right, bottom in boxes if right > width or bottom > height]
    for i, (cls, left, top, right, bottom) in enumerate(boxes):
        for other, l2, t2, r2, b2 in boxes[i + 1 :]:
            if left < r2 and l2 < right and top < b2 and t2 < bottom:
                problems.append(f"{cls} overlaps {other}")
        for x, y, w, h in rects:
            if left < x + w and x < right and top < y + h and y < bottom:
                problems.append(f"{cls} overlaps a bar")
    return problems


def test_every_text_fits_and_overlaps_nothing_however_long(charts: ModuleType) -> None:
    Bar, Group = charts.Bar, charts.Group
    long = "token_provider as openai asks, + header, this checkout beside a baseline revision"
    svg = charts.bar_chart(
        "A title longer than the chart would be for its bars alone, as a chart title may well be, and more",
        [
            Group("a heading as long as any a run writes, and then some more words to be sure", [Bar(long, 13_288)]),
            Group("short", [Bar("a", 1, ours=True), Bar("WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW", 64)]),
        ],
        unit="credential calls",
        clip=100,
    )
    assert _misfits(svg, charts) == []
    width, _height, boxes = _boxes(svg, charts)
    label_right = max(right for cls, _l, _t, right, _b in boxes if cls == "label")
    assert label_right <= min(float(r.get("x") or 0) for r in _bars(svg))  # labels end before the bars begin
    assert width > charts.text_width(long)  # the chart grew to hold its longest label


def test_the_committed_charts_fit_and_say_their_units(charts: ModuleType) -> None:
    units = {"bench-per-request.svg": " ns", "bench-herd.svg": " call", "bench-end-to-end.svg": " µs"}
    for name, unit in units.items():
        svg = (ROOT / "docs" / "img" / name).read_text(encoding="utf-8")
        assert _misfits(svg, charts) == [], name
        assert all(unit in value for value in _texts(svg, "value")), name
        assert unit in "".join(_texts(svg, "axis")), name


def test_no_bars_or_negative_values_are_refused(charts: ModuleType) -> None:
    with pytest.raises(ValueError, match="at least one bar"):
        charts.bar_chart("t", [charts.Group("g", [])], unit="ns")
    with pytest.raises(ValueError, match="negative"):
        charts.bar_chart("t", [charts.Group("g", [charts.Bar("a", -1)])], unit="ns")


def test_charts_from_a_runs_figures(charts: ModuleType) -> None:
    Bar, Group = charts.Bar, charts.Group
    figures = {
        "per_request": Group("sync", [Bar("Floor", 200), Bar("AzureADTokenAuth", 500, True), Bar("cookbook", 600)]),
        "herds": [Group("cold herd", [Bar("AzureADTokenAuth", 1, True), Bar("cookbook", 64)])],
        "fleet": [Group("fleet at start", [Bar("shared", 1, True), Bar("unshared", 16)])],
    }
    svgs = charts.charts(figures)
    assert sorted(svgs) == ["bench-herd.svg", "bench-per-request.svg"]  # no end-to-end figures: no chart
    assert len(_bars(svgs["bench-per-request.svg"])) == 3
    assert _texts(svgs["bench-herd.svg"], "value") == ["1 call", "64 calls", "1 call", "16 calls"]
    assert charts.charts({}) == {}


def test_markdown_block_is_replaced_and_the_rest_kept(base: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nintro\n\n{base.BEGIN}\nold figures\n{base.END}\n\nafter\n")
    base.write_markdown(page, "new figures")
    assert page.read_text() == f"# Benchmarks\n\nintro\n\n{base.BEGIN}\nnew figures\n{base.END}\n\nafter\n"
    bare = tmp_path / "bare.md"
    bare.write_text("no block here\n")
    with pytest.raises(SystemExit, match="no generated block"):
        base.write_markdown(bare, "x")
    assert bare.read_text() == "no block here\n"


def test_readme_summary_is_its_own_block_beside_the_docs_block(base: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{base.SUMMARY_BEGIN}\nold\n{base.SUMMARY_END}\n\n## Next\n")
    report = base.Report(base.SHORT, "python3 dev.py bench --short")
    report.summary += ["first figure", "second figure"]
    base.write_markdown(readme, report.summary_markdown(), base.SUMMARY_BEGIN, base.SUMMARY_END)
    text = readme.read_text()
    block = text.split(base.SUMMARY_BEGIN)[1].split(base.SUMMARY_END)[0]
    assert block.startswith("\nMeasured by `python3 dev.py bench --short` (short run) on ")
    assert block.endswith("\n\n- first figure\n- second figure\n")
    assert text.endswith(f"{base.SUMMARY_END}\n\n## Next\n")
    with pytest.raises(SystemExit, match="no generated block"):
        base.write_markdown(readme, "x")  # the docs page's markers are not the README's


def test_readme_has_the_generated_summary() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- bench-summary:begin")[1].split("<!-- bench-summary:end -->")[0]
    assert "Measured by `python3 dev.py bench" in block
    assert "`AzureADTokenAuth`" in block and "cookbook" in block


def test_docs_page_has_the_generated_block_and_its_charts() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "<!-- bench:begin" in page
    assert "<!-- bench:end -->" in page
    images = re.findall(r"!\[[^\]]*\]\((img/[^)]+\.svg)\)", page)
    assert {"img/bench-per-request.svg", "img/bench-herd.svg"} <= set(images)
    for image in images:
        ET.parse(ROOT / "docs" / image)  # exists and is well-formed SVG


@pytest.fixture
def baseline(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks._baseline")


def test_a_baseline_copy_imports_beside_this_one(baseline: ModuleType, tmp_path: Path) -> None:
    import sys

    import azure_ad_token_auth
    from azure_ad_token_auth.testing import FakeCredential

    shutil.copytree(ROOT / "src" / "azure_ad_token_auth", tmp_path / "azure_ad_token_auth")
    (tmp_path / "azure_ad_token_auth" / "_version.py").write_text('__version__ = "0.0.0+baseline"\n')
    before = {name: module for name, module in sys.modules.items() if name.startswith("azure_ad_token_auth")}
    src, _ = baseline.source(str(tmp_path), tmp_path / "work")
    assert src == tmp_path.resolve()
    old = baseline.load(src)
    assert old.__version__ == "0.0.0+baseline"
    assert old.AzureADTokenAuth is not azure_ad_token_auth.AzureADTokenAuth
    after = {name: module for name, module in sys.modules.items() if name.startswith("azure_ad_token_auth")}
    assert after == before  # this checkout's modules are back, the copy's are not registered
    provider = old.token_provider(FakeCredential(), "https://cognitiveservices.azure.com/.default")
    assert provider().startswith("fake-")  # the copy works on its own module globals


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a checkout")
def test_a_baseline_revision_is_extracted_with_git_archive(baseline: ModuleType, tmp_path: Path) -> None:
    src, name = baseline.source("HEAD", tmp_path)
    assert (src / "azure_ad_token_auth" / "__init__.py").is_file()
    assert src.is_relative_to(tmp_path)
    assert re.fullmatch(r"`[0-9a-f]{7,}`", name)
    with pytest.raises(SystemExit, match="neither a checkout nor a git revision"):
        baseline.source("no-such-revision-anywhere", tmp_path / "other")


def test_redis_entraid_tracebacks_after_its_server_stopped_are_counted_not_shown() -> None:
    # Its token manager has no public stop and logs a traceback per failed renewal through the
    # `asyncio` logger for the rest of the run: CI's log showed pages of them.
    import logging

    pytest.importorskip("redis")
    from redis.event import EventException

    pools = importlib.import_module("benchmarks.redis_pools")
    quiet = pools._EntraidAfterItsServer()
    before = pools._EntraidAfterItsServer.dropped

    def record(error: BaseException | None) -> logging.LogRecord:
        info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task exception", None, info)

    assert not quiet.filter(record(EventException(ConnectionError("refused"), object())))
    assert quiet.filter(record(ValueError("ours")))  # anything else still shows
    assert quiet.filter(record(None))
    assert pools._EntraidAfterItsServer.dropped == before + 1
