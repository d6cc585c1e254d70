from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from PIL import Image

from nodemetrics import NodeMetrics, NodeMetricsCollector
from nodemetrics._html import render_html


REQUIRE = os.environ.get("NODEMETRICS_REQUIRE_CHROMIUM") == "1"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if REQUIRE:
        pytest.fail("chromium is required (NODEMETRICS_REQUIRE_CHROMIUM=1) but not on PATH")
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


def chromium(tmp_path, *args):
    """Run headless Chromium with everything that would reach for the network turned off."""
    return subprocess.run(  # noqa: S603 -- the machine's chromium, our arguments
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def collector():
    c = NodeMetricsCollector()
    for i in range(50):
        c.record_success("fetch", 10.0 + i)
        c.record_success("parse", 0.5 + i / 100)
    c.record_failure("fetch", 80.0, TimeoutError())
    c.record_failure("fetch", 5.0, ConnectionError())
    c.record_failure("parse", 1.0, ValueError())
    c.record_retry("fetch")
    c.record_cancellation("store")
    return c


class TestRender:
    def test_one_row_per_node(self, collector):
        """Every node has one row, sorted by name, with its name escaped."""
        collector.record_success("<b>&</b>", 1.0)
        page = render_html(collector.get_all_node_metrics())
        names = re.findall(r'<tr class="node"><td class="node">(.*?)</td>', page)
        assert ["&lt;b&gt;&amp;&lt;/b&gt;", "fetch", "parse", "store"] == names

    def test_self_contained(self, collector):
        """No script, no external resource, no URL at all."""
        page = render_html(collector.get_all_node_metrics())
        assert "<script" not in page.lower()
        assert "://" not in page
        assert "src=" not in page
        assert "@import" not in page

    def test_shared_scales(self, collector):
        """The largest percentile fills the latency bar; the most failures fill theirs."""
        snapshot = collector.get_all_node_metrics()
        page = render_html(snapshot)
        assert (
            f'width="280.0" height="10" fill="#08519c"><title>p99 {snapshot["fetch"].p99:.1f}'
            in page
        )
        widths = re.findall(r'<rect x="[\d.]+" y="0" width="([\d.]+)" height="14"', page)
        # fetch: 2 failures fill 200 px in two halves; parse: 1 failure, 100 px.
        assert ["100.0", "100.0", "100.0"] == widths

    def test_every_field(self, collector):
        """Each to_dict() field but the percentiles has a column; a new one shows up by itself."""
        page = render_html(collector.get_all_node_metrics())
        headers = re.findall(r'<th class="count">(.*?)</th>', page)
        expected = [
            f.removesuffix("_ms").replace("_", " ") + (" ms" if f.endswith("_ms") else "")
            for f in NodeMetrics().to_dict()
            if f not in {"p50", "p90", "p99"}  # drawn as bars
        ]
        assert expected == headers

    def test_extra_fields(self):
        """A snapshot type with more fields than today's gets a column for each."""

        class Wider(NodeMetrics):
            __slots__ = ()

            def to_dict(self):
                return {**super().to_dict(), "interrupted_count": 7}

        page = render_html({"n": Wider()})
        assert '<th class="count">interrupted count</th>' in page
        assert 1 == page.count("<td>7</td>")

    def test_empty(self):
        """A snapshot without nodes says so."""
        page = render_html({})
        assert "No nodes in this snapshot." in page
        assert '<tr class="node">' not in page


class TestInChromium:
    def test_renders(self, collector, tmp_path):
        """Headless Chromium draws a non-blank page with one table row per node."""
        path = tmp_path / "report.html"
        path.write_text(render_html(collector.get_all_node_metrics(), title="test"))
        dom = chromium(tmp_path, "--dump-dom", path.as_uri())
        assert 0 == dom.returncode, dom.stderr[-2000:]
        assert 3 == dom.stdout.count('<tr class="node">')
        assert "nodemetrics report" in dom.stdout

        png = tmp_path / "shot.png"
        shot = chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,400", path.as_uri())
        assert 0 == shot.returncode, shot.stderr[-2000:]
        with Image.open(png) as image:
            rgb = image.convert("RGB")
            colours = rgb.getcolors(maxcolors=1 << 20) or []
        white = sum(n for n, colour in colours if colour == (255, 255, 255))
        assert white < 0.97 * rgb.width * rgb.height
        # The bars' own colours are drawn: p99 blue and timeout orange.
        drawn = {colour for _, colour in colours}
        assert {(8, 81, 156), (230, 85, 13)} <= drawn
