"""``waku-bridge report --format html``: the page, rendered by a real headless Chromium (Debian's
``chromium``, installed by scripts/setup.sh).

Aggregates are written into a real SQLite data dir (two instances, as after a failover); the page
is generated, then Chromium (1) dumps its DOM: the SVG charts have one point per day with traffic,
one point per hour per direction, one stacked bar per top topic, and nothing refers to another
host; (2) takes a 1200x1600 screenshot, whose pixels inside each chart's box (the boxes measured by
the same Chromium on an instrumented copy of the page) are of that chart's colours.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from bridge.aggregates import HOUR, AggregatesStore, HourlyRow
from bridge.app.report import run_report
from bridge.report import DAY
from bridge.report_html import COLOURS, TOP_TOPICS, nice_ticks

ROOT = Path(__file__).resolve().parents[3]
DAY0 = 1_799_539_200  # 2027-01-10 00:00:00 UTC
NOW = DAY0 + 6 * DAY + 12 * HOUR + 600  # a week's report, today 12:10
HOURS = 6 * 24 + 12  # complete hours of the 7-day window (the current one is partial)
TOPICS = [f"/waku/1/0x{k:08x}/rfc26" for k in range(12)]
QUIET_DAY = 2  # no traffic at all that day (a bridge outage): a gap in the share line
XSS = "/app/1/<script>alert(1)</script>/proto"  # content topics come from the network


def _cells(hour: int) -> list[HourlyRow]:
    """Topic k: (12 - k) messages an hour; its v2 share grows over the week (k = 11 stays on v1)."""
    day = (hour - DAY0) // DAY
    if day == QUIET_DAY:
        return []
    out = []
    for k, topic in enumerate(TOPICS):
        n = 12 - k
        v2 = 0 if k == 11 else min(n, n * day // 5)
        out += [HourlyRow(hour, topic, o, c, 100 * c) for o, c in (("v1", n - v2), ("v2", v2)) if c]
    if day == 5:
        out.append(HourlyRow(hour, XSS, "v1", 1, 10))
    return out


async def _write_data_dir(data: Path) -> list[HourlyRow]:
    rows = [r for h in range(DAY0, DAY0 + (HOURS + 1) * HOUR, HOUR) for r in _cells(h)]  # and the current hour
    half = len(rows) // 2
    for peer, part in (("A", rows[:half]), ("B", rows[half:])):  # A active, then B after a failover
        store = AggregatesStore(data / peer / "aggregates.sqlite3")
        await store.open()
        await store.write(part)
        await store.aclose()
    return rows


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is needed (scripts/setup.sh installs it)"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
           "--window-size=1200,1600", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


class _Dom(HTMLParser):
    """Elements of the dumped DOM as (tag, attributes, ids of the enclosing svg and g)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], str, int]] = []
        self._svg, self._bar, self._bars = "", -1, 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._svg = a.get("id", "")
        if tag == "g" and "bar" in a.get("class", "").split():
            self._bar, self._bars = self._bars, self._bars + 1
        self.elements.append((tag, a, self._svg, self._bar))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = ""
        if tag == "g":
            self._bar = -1

    def find(self, tag: str, cls: str = "", svg: str | None = None) -> list[dict[str, str]]:
        return [a for t, a, s, _ in self.elements
                if t == tag and (not cls or cls in a.get("class", "").split()) and (svg is None or s == svg)]


def _points(polyline: dict[str, str]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in polyline["points"].split())]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _count(img: Image.Image, box: tuple[int, int, int, int], colour: str, tol: int = 24) -> int:
    """Pixels within ``tol`` per channel of ``colour`` in ``box`` (left, top, width, height)."""
    want = _rgb(colour)
    x, y, w, h = box
    raw = img.crop((x, y, x + w, y + h)).tobytes()  # RGB, 3 bytes a pixel
    return sum(1 for i in range(0, len(raw), 3) if all(abs(raw[i + c] - want[c]) <= tol for c in range(3)))


async def test_html_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rows = await _write_data_dir(data)
    page = tmp_path / "report.html"
    assert run_report(data, "html", 7, now=NOW, out=page) == 0
    html = page.read_text()
    assert oct(page.stat().st_mode & 0o777) == "0o644"

    # Self-contained: no script, stylesheet, font or image from anywhere; network strings escaped.
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|\bsrc=", html, re.I)
    assert not re.search(r"(href|src)=\"(https?:)?//", html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    # (1) the DOM as Chromium built it
    dom_text = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p1").stdout
    dom = _Dom()
    dom.feed(dom_text)
    svgs = {a["id"]: a for a in dom.find("svg", "chart")}
    assert set(svgs) == {"chart-share", "chart-rates", "chart-topics"}
    for sid, a in svgs.items():  # accessible names: <title> and <desc> referenced by the svg
        assert a["role"] == "img" and a["aria-labelledby"] == f"{sid}-title {sid}-desc"
        assert dom.find("title", svg=sid) and dom.find("desc", svg=sid)
    assert len(dom.find("text", "axis-label", "chart-share")) == 2
    assert len(dom.find("text", "axis-label", "chart-rates")) == 2

    # v2 share: one point per day with traffic (6 of 7), two line segments around the quiet day
    circles = dom.find("circle", "share", "chart-share")
    assert len(circles) == 6
    segments = dom.find("polyline", "share", "chart-share")
    assert [len(_points(s)) for s in segments] == [QUIET_DAY, 7 - QUIET_DAY - 1]
    ys = [float(c["cy"]) for c in circles]
    assert ys == sorted(ys, reverse=True) and ys[0] > ys[-1]  # the share rises (SVG y grows downwards)

    # rates: one point per hour per direction; the busiest hour's value sits at its height
    (v1_line,) = dom.find("polyline", "v1", "chart-rates")
    (v2_line,) = dom.find("polyline", "v2", "chart-rates")
    v1_pts, v2_pts = _points(v1_line), _points(v2_line)
    assert len(v1_pts) == len(v2_pts) == HOURS
    assert v1_line["stroke"] == COLOURS["v1"] and v2_line["stroke"] == COLOURS["v2"]
    assert "stroke-dasharray" in v2_line and "stroke-dasharray" not in v1_line  # not by colour alone
    quiet = range(QUIET_DAY * 24, QUIET_DAY * 24 + 24)
    base = max(y for _, y in v1_pts)  # y of zero
    assert all(v1_pts[i][1] == base and v2_pts[i][1] == base for i in quiet)
    assert v1_pts[0][1] < v2_pts[0][1] and v1_pts[-1][1] > v2_pts[-1][1]  # v1 busier first, v2 at the end
    assert [x for x, _ in v1_pts] == sorted(x for x, _ in v1_pts)

    # top topics: TOP_TOPICS stacked bars, busiest first, the v1 and v2 parts in proportion
    bars = [a for t, a, _, _ in dom.elements if t == "g" and "bar" in a.get("class", "").split()]
    assert len(bars) == TOP_TOPICS
    assert [b["data-topic"] for b in bars] == TOPICS[:TOP_TOPICS]
    rects = {(bar, a["class"]): a for t, a, s, bar in dom.elements if t == "rect" and s == "chart-topics"}
    assert len(rects) == 2 * TOP_TOPICS
    totals = {t: [0, 0] for t in TOPICS}
    for r in rows:
        if r.topic in totals:
            totals[r.topic][r.origin == "v2"] += r.count
    scale = float(rects[(0, "v1")]["width"]) / totals[TOPICS[0]][0]
    for i, topic in enumerate(TOPICS[:TOP_TOPICS]):
        assert abs(float(rects[(i, "v1")]["width"]) - totals[topic][0] * scale) < 0.2
        assert abs(float(rects[(i, "v2")]["width"]) - totals[topic][1] * scale) < 0.2
    assert nice_ticks(max(sum(v) for v in totals.values()))[-1] * scale <= 1000  # the axis holds the longest

    # the table fallback holds every number, including what the charts leave out
    day_rows = re.findall(r"<tr><td>\d{4}-\d\d-\d\d</td>", dom_text)
    assert len(day_rows) == 7
    assert dom_text.count('<tr><td class="l">') == len(TOPICS) + 1

    # (2) the screenshot: measure each chart's box on an instrumented copy (the page's own CSP
    # forbids scripts), then look at those boxes in a screenshot of the page itself.
    probe = tmp_path / "probe.html"
    probe.write_text(re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", html).replace(
        "</body>", "<script>for (const e of document.querySelectorAll('svg.chart, svg.chart rect')) {"
        "const r = e.getBoundingClientRect(); e.setAttribute('data-box', [r.left, r.top, r.width, r.height]"
        ".map(Math.round).join(','));}</script></body>"))
    probe_dom = _chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "p2").stdout
    boxes = {m[0]: tuple(int(v) for v in m[1].split(","))
             for m in re.findall(r'<svg id="(chart-\w+)"[^>]*data-box="([\d,-]+)"', probe_dom)}
    assert set(boxes) == set(svgs)
    rect_boxes = [tuple(int(v) for v in b.split(",")) for b in re.findall(r'<rect[^>]*data-box="([\d,-]+)"',
                                                                             probe_dom)]
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "p3")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    for box in boxes.values():  # every chart is on the first screen, in order, side by side
        assert box[2] > 900 and box[1] + box[3] <= 1600
    assert boxes["chart-share"][1] < boxes["chart-rates"][1] < boxes["chart-topics"][1]

    share, rates, topics = boxes["chart-share"], boxes["chart-rates"], boxes["chart-topics"]
    assert _count(img, share, COLOURS["share"]) > 800  # the line and its six dots (about 1,700 px)
    assert _count(img, share, COLOURS["v1"]) == _count(img, share, COLOURS["v2"]) == 0
    assert _count(img, rates, COLOURS["v1"]) > 800 and _count(img, rates, COLOURS["v2"]) > 400  # ~2,200, ~1,400
    assert _count(img, rates, COLOURS["share"]) == 0
    bar_px = [_count(img, topics, COLOURS[c], tol=4) for c in ("v1", "v2")]
    if os.environ.get("REPORT_HTML_KEEP"):  # to look at the page: REPORT_HTML_KEEP=/tmp/x.png
        shutil.copy(shot, os.environ["REPORT_HTML_KEEP"])
    assert min(bar_px) > 20_000  # solid bars
    for x, y, w, h in rect_boxes:  # each bar segment wider than a few pixels is painted in its colour
        if w > 6:
            centre = img.getpixel((x + w // 2, y + h // 2))
            assert centre in (_rgb(COLOURS["v1"]), _rgb(COLOURS["v2"]))
    assert img.getpixel((5, 5)) == (0xF4, 0xF5, 0xF7)  # the page background, not a blank/error page


def test_report_cli_writes_html_file(tmp_path: Path) -> None:
    """The real command line: ``waku-bridge report --format html -o FILE`` on an aggregates file."""
    data = tmp_path / "data"
    (data / "A").mkdir(parents=True)
    hour = int(time.time() // HOUR) * HOUR
    conn = sqlite3.connect(data / "A" / "aggregates.sqlite3")
    conn.execute("CREATE TABLE hourly (hour INTEGER NOT NULL, topic TEXT NOT NULL, origin TEXT NOT NULL, "
                 "count INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (hour, topic, origin)) WITHOUT ROWID")
    conn.execute("INSERT INTO hourly VALUES (?, 'x', 'v1', 3, 30), (?, 'x', 'v2', 1, 10)", (hour, hour))
    conn.commit()
    conn.close()
    out = tmp_path / "r.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bridge.app.cli", "report", "--data-dir", str(data), "--days", "3"]
    done = subprocess.run([*cmd, "--format", "html", "-o", str(out)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and f"wrote {out}" in done.stderr
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg ") == 3 and "25.0 %" in text
    bad = subprocess.run([*cmd, "--format", "html", "-o", str(tmp_path / "no" / "r.html")], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "not a directory" in bad.stderr


def test_html_edge_cases_and_ticks() -> None:
    """Pure rendering: an empty window, one partial day, the tick steps (no browser needed)."""
    from bridge.report import build_report
    from bridge.report_html import hourly_series, render_html

    empty = render_html(build_report([], now=NOW, days=3), [])
    assert "No bridged traffic in the window." in empty and 'id="chart-topics"' not in empty
    assert 'class="pt share"' not in empty and empty.count('class="series v1"') == 1
    one = [HourlyRow(DAY0 + 6 * DAY, XSS, "v1", 5, 50), HourlyRow(DAY0 + 6 * DAY + HOUR, XSS, "v2", 5, 50)]
    page = render_html(build_report(one, now=NOW, days=1), one)
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 3  # bar label, title, table
    assert page.count('class="pt share"') == 1 and ">50.0 %<" in page
    series = hourly_series(one, since=DAY0 + 6 * DAY, now=NOW)
    assert len(series) == 12 and (series[0].v1, series[1].v2, series[2].v1) == (5, 5, 0)
    assert len(hourly_series(one, since=DAY0 + 6 * DAY, now=DAY0 + 6 * DAY + 60)) == 1  # only a partial hour
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(1596) == [0, 500, 1000, 1500, 2000]
    assert nice_ticks(100) == [0, 20, 40, 60, 80, 100]
