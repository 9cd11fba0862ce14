"""The migration report as one self-contained HTML page (pure: rows and ``now`` in, a string out).

Three charts, drawn here as inline SVG (no script, no font, no stylesheet from elsewhere: the page
is mailed around and opened offline, and operators' browsers block third-party hosts):

1. **v2 share per day**: v2-originated / all originated, one point per UTC day with traffic;
2. **messages per hour by direction**: v1→v2 (originated on v1) and v2→v1 (originated on v2),
   one point per complete UTC hour of the window;
3. **top content topics by origin**: the ``TOP_TOPICS`` busiest topics, one stacked bar each
   (from v1 | from v2), labelled with the topic's status (v2-only, mixed, v1-only).

Accessibility: every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that
states the numbers in words, axes carry labels, the two series differ by dash as well as by colour
(orange/blue, distinguishable with the common colour-vision deficiencies), and the tables under
the charts hold every number the charts show.

Content topics come from the network: every string that reaches the page goes through
:func:`html.escape` (text and attributes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from bridge.aggregates import HOUR, HourlyRow, hour_of
from bridge.report import MigrationReport, TopicStatus, TopicSummary

__all__ = ["COLOURS", "TOP_TOPICS", "HourPoint", "hourly_series", "nice_ticks", "render_html"]

TOP_TOPICS = 10
# v1: orange, v2: blue (a pair safe for deuteranopia and protanopia); share: green.
COLOURS = {"v1": "#e8590c", "v2": "#1c7ed6", "share": "#2b8a3e"}

# Chart geometry (SVG user units; the SVG scales to the page width).
_W = 1000
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 70, 20, 16, 48


@dataclass(frozen=True, slots=True)
class HourPoint:
    hour: int  # unix seconds at the start of the UTC hour
    v1: int  # messages originated on v1 (bridged v1 -> v2)
    v2: int  # messages originated on v2 (bridged v2 -> v1)


def hourly_series(rows: Iterable[HourlyRow], *, since: int, now: float) -> list[HourPoint]:
    """One point per complete hour from ``since`` to the hour before ``now``'s, zeros where no row.

    The current hour is left out (unless it is the only one): its count is partial, and a line
    that always ends in a dip reads as traffic dropping.
    """
    last = max(since, hour_of(now) - HOUR)
    cells: dict[int, list[int]] = {h: [0, 0] for h in range(since, last + 1, HOUR)}
    for r in rows:
        cell = cells.get(r.hour)
        if cell is not None:
            cell[1 if r.origin == "v2" else 0] += r.count
    return [HourPoint(h, v1, v2) for h, (v1, v2) in sorted(cells.items())]


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2 or 5 × 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _num(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else f"{x:,.1f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _date(ts: float, fmt: str = "%Y-%m-%d") -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(fmt)


def _e(s: str) -> str:
    return escape(s, quote=True)


class _Plot:
    """Maps data to SVG coordinates inside the padded plot area of one chart."""

    def __init__(self, height: int, x_max: float, y_max: float) -> None:
        self.h = height
        self.x_max = x_max if x_max > 0 else 1.0
        self.y_max = y_max if y_max > 0 else 1.0

    def x(self, v: float) -> float:
        return round(_PAD_L + (_W - _PAD_L - _PAD_R) * v / self.x_max, 1)

    def y(self, v: float) -> float:
        return round(self.h - _PAD_B - (self.h - _PAD_T - _PAD_B) * v / self.y_max, 1)


def _svg_open(chart_id: str, height: int, title: str, desc: str) -> list[str]:
    return [f'<svg id="{chart_id}" class="chart" role="img" viewBox="0 0 {_W} {height}" '
            f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
            f'<title id="{chart_id}-title">{_e(title)}</title>',
            f'<desc id="{chart_id}-desc">{_e(desc)}</desc>']


def _y_axis(p: _Plot, ticks: Sequence[float], label: str, fmt: Callable[[float], str] = _num) -> list[str]:
    out = []
    for t in ticks:
        y = p.y(t)
        out.append(f'<line class="grid" x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="tick" x="{_PAD_L - 8}" y="{y + 4}" text-anchor="end">{fmt(t)}</text>')
    mid = (_PAD_T + p.h - _PAD_B) / 2
    out.append(f'<text class="axis-label" transform="translate(16 {mid}) rotate(-90)" '
               f'text-anchor="middle">{_e(label)}</text>')
    return out


def _x_axis_days(p: _Plot, day_starts: Sequence[int], since: int, label: str, *, centre: bool) -> list[str]:
    """Day ticks (at most ~12 labelled, so a 400-day window stays readable)."""
    out = [f'<line class="axis" x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{p.h - _PAD_B}" y2="{p.h - _PAD_B}"/>']
    every = max(1, math.ceil(len(day_starts) / 12))
    for i, d in enumerate(day_starts):
        if i % every:
            continue
        x = p.x((d - since) / HOUR + (12 if centre else 0))
        out.append(f'<text class="tick" x="{x}" y="{p.h - _PAD_B + 18}" text-anchor="middle">'
                   f'{_date(d, "%b %d")}</text>')
    out.append(f'<text class="axis-label" x="{(_PAD_L + _W - _PAD_R) / 2}" y="{p.h - 8}" '
               f'text-anchor="middle">{_e(label)}</text>')
    return out


def _share_chart(rep: MigrationReport) -> str:
    h = 250
    n = len(rep.days)
    day_starts = [rep.since + i * 24 * HOUR for i in range(n)]
    p = _Plot(h, n * 24, 1.0)
    with_traffic = [(i, d) for i, d in enumerate(rep.days) if d.v2_share is not None]
    if with_traffic:
        first, last = with_traffic[0][1], with_traffic[-1][1]
        desc = (f"v2 share of originated messages on {len(with_traffic)} days with traffic: "
                f"{_pct(first.v2_share)} on {first.day}, {_pct(last.v2_share)} on {last.day}.")
    else:
        desc = "No bridged traffic in the window."
    out = _svg_open("chart-share", h, "v2 share of originated messages, per UTC day", desc)
    out += _y_axis(p, [0, 0.25, 0.5, 0.75, 1.0], "v2 share", lambda v: f"{100 * v:.0f} %")
    out += _x_axis_days(p, day_starts, rep.since, "day (UTC)", centre=True)
    # one polyline per run of consecutive days with traffic: a gap is not drawn as a trend
    runs: list[list[tuple[float, float]]] = []
    prev = -2
    for i, d in with_traffic:
        assert d.v2_share is not None
        pt = (p.x(i * 24 + 12), p.y(d.v2_share))
        if i != prev + 1:
            runs.append([])
        runs[-1].append(pt)
        prev = i
    for run in runs:
        pts = " ".join(f"{x},{y}" for x, y in run)
        out.append(f'<polyline class="series share" points="{pts}" fill="none" stroke="{COLOURS["share"]}" '
                   'stroke-width="3"/>')
    for i, d in with_traffic:
        assert d.v2_share is not None
        out.append(f'<circle class="pt share" cx="{p.x(i * 24 + 12)}" cy="{p.y(d.v2_share)}" r="5" '
                   f'fill="{COLOURS["share"]}"><title>{d.day}: {_pct(d.v2_share)} '
                   f'({d.v2_messages:,} of {d.messages:,})</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def _rates_chart(series: Sequence[HourPoint], since: int) -> str:
    h = 270
    n = len(series)
    peak = max((max(pt.v1, pt.v2) for pt in series), default=0)
    ticks = nice_ticks(peak)
    p = _Plot(h, max(n - 1, 1), ticks[-1])
    day_starts = sorted({pt.hour // (24 * HOUR) * 24 * HOUR for pt in series})
    busiest = max(series, key=lambda pt: pt.v1 + pt.v2, default=None)
    desc = (f"Messages bridged per hour over {n} hours; peak {peak:,} per hour"
            + (f" (busiest hour {_date(busiest.hour, '%Y-%m-%d %H:00')} UTC: {busiest.v1:,} from v1, "
               f"{busiest.v2:,} from v2)." if busiest and peak else "."))
    out = _svg_open("chart-rates", h, "Messages per hour by direction", desc)
    out += _y_axis(p, ticks, "messages / hour")
    out += _x_axis_days(p, day_starts, since, "hour (UTC), labelled at each day's start", centre=False)
    for origin, label, dash in (("v1", "v1 → v2 (originated on v1)", ""),
                                ("v2", "v2 → v1 (originated on v2)", ' stroke-dasharray="8 4"')):
        pts = " ".join(f"{p.x(i)},{p.y(getattr(pt, origin))}" for i, pt in enumerate(series))
        out.append(f'<polyline class="series {origin}" points="{pts}" fill="none" stroke="{COLOURS[origin]}" '
                   f'stroke-width="2.5" stroke-linejoin="round"{dash}><title>{_e(label)}</title></polyline>')
    out.append("</svg>")
    return "\n".join(out)


def _short(topic: str, limit: int = 34) -> str:
    return topic if len(topic) <= limit else topic[: limit - 1] + "…"


def _topics_chart(topics: Sequence[TopicSummary]) -> str:
    bar, gap, label_w = 24, 10, 300
    h = _PAD_T + len(topics) * (bar + gap) + _PAD_B
    peak = max((t.v1_messages + t.v2_messages for t in topics), default=0)
    ticks = nice_ticks(peak)
    x0, x1 = label_w, _W - _PAD_R - 130

    def x(v: float) -> float:
        return round(x0 + (x1 - x0) * v / (ticks[-1] or 1), 1)

    desc = (f"The {len(topics)} busiest content topics, messages from v1 and from v2: "
            + "; ".join(f"{t.topic} {t.v1_messages:,} from v1, {t.v2_messages:,} from v2 ({t.status.value})"
                        for t in topics[:3]) + ("…" if len(topics) > 3 else "."))
    out = _svg_open("chart-topics", h, f"Top {len(topics)} content topics by origin", desc)
    for tick in ticks:
        out.append(f'<line class="grid" x1="{x(tick)}" x2="{x(tick)}" y1="{_PAD_T}" y2="{h - _PAD_B}"/>')
        out.append(f'<text class="tick" x="{x(tick)}" y="{h - _PAD_B + 18}" text-anchor="middle">{_num(tick)}</text>')
    out.append(f'<text class="axis-label" x="{(x0 + x1) / 2}" y="{h - 8}" text-anchor="middle">'
               'messages in the window (orange: from v1, blue: from v2)</text>')
    for i, t in enumerate(topics):
        y = _PAD_T + i * (bar + gap)
        w1, w2 = x(t.v1_messages) - x0, x(t.v1_messages + t.v2_messages) - x(t.v1_messages)
        out.append(f'<g class="bar" data-topic="{_e(t.topic)}"><title>{_e(t.topic)}: {t.v1_messages:,} from v1, '
                   f'{t.v2_messages:,} from v2 ({t.status.value})</title>')
        out.append(f'<text class="bar-label" x="{x0 - 10}" y="{y + bar / 2 + 5}" text-anchor="end">'
                   f'{_e(_short(t.topic))}</text>')
        out.append(f'<rect class="v1" x="{x0}" y="{y}" width="{round(w1, 1)}" height="{bar}" '
                   f'fill="{COLOURS["v1"]}"/>')
        out.append(f'<rect class="v2" x="{round(x0 + w1, 1)}" y="{y}" width="{round(w2, 1)}" height="{bar}" '
                   f'fill="{COLOURS["v2"]}"/>')
        # v1-only topics are what still holds v1 up: their label stands out
        cls = "bar-value v1-only" if t.status is TopicStatus.V1_ONLY else "bar-value"
        out.append(f'<text class="{cls}" x="{x(t.v1_messages + t.v2_messages) + 8}" y="{y + bar / 2 + 5}">'
                   f'{t.v1_messages + t.v2_messages:,} · {_e(t.status.value)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 0; background: #f4f5f7;
       color: #1f2328; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 0 0 4px; }
p.sub { color: #555; margin: 0 0 18px; }
section.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 18px 20px;
               margin: 0 0 18px; }
.kpis { display: flex; gap: 14px; margin: 0 0 18px; }
.kpi { flex: 1; background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 12px 16px; }
.kpi b { display: block; font-size: 24px; margin-top: 4px; }
.kpi span { color: #555; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: #e6e8eb; stroke-width: 1; }
svg .axis { stroke: #888; stroke-width: 1; }
svg text { font-size: 13px; fill: #444; }
svg .axis-label { font-size: 13px; fill: #222; font-weight: bold; }
svg .bar-label { font-size: 13px; fill: #222; }
svg .v1-only { font-weight: bold; fill: #b8400a; }
.legend { margin: 6px 0 10px; font-size: 14px; }
.legend i { display: inline-block; width: 26px; height: 0; vertical-align: middle; margin: 0 6px 0 14px;
            border-top: 4px solid; }
.legend i.v2 { border-top-style: dashed; }
details { margin-top: 10px; }
summary { cursor: pointer; color: #0b5cad; }
table { border-collapse: collapse; font-size: 13px; margin-top: 8px; width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eceef0; text-align: right; }
th:first-child, td:first-child, td.l { text-align: left; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
footer { color: #666; font-size: 12px; }
"""


def _legend(items: Sequence[tuple[str, str, str]]) -> str:
    return ('<p class="legend" aria-hidden="true">'
            + "".join(f'<i class="{cls}" style="border-color:{colour}"></i>{_e(text)}' for cls, colour, text in items)
            + "</p>")


def _day_table(rep: MigrationReport) -> str:
    rows = "".join(f"<tr><td>{d.day}</td><td>{d.v1_messages:,}</td><td>{d.v2_messages:,}</td>"
                   f"<td>{d.v1_bytes:,}</td><td>{d.v2_bytes:,}</td><td>{_pct(d.v2_share)}</td></tr>"
                   for d in (*rep.days, rep.total))
    return ('<details><summary>Table: messages per day</summary><table id="table-days">'
            "<caption>Messages and bytes per UTC day, by origin</caption>"
            '<thead><tr><th scope="col">day</th><th scope="col">from v1</th><th scope="col">from v2</th>'
            '<th scope="col">v1 bytes</th><th scope="col">v2 bytes</th><th scope="col">v2 share</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></details>")


def _topic_table(rep: MigrationReport) -> str:
    def ts(x: int | None) -> str:
        return "–" if x is None else _date(x, "%Y-%m-%d %H:00")

    rows = "".join(f'<tr><td class="l">{_e(t.topic)}</td><td class="l">{t.status.value}</td>'
                   f"<td>{t.v1_messages:,}</td><td>{t.v2_messages:,}</td><td>{_pct(t.v2_share)}</td>"
                   f"<td>{ts(t.last_v1)}</td><td>{ts(t.last_v2)}</td></tr>" for t in rep.topics)
    return (f'<details><summary>Table: all {len(rep.topics)} content topics</summary><table id="table-topics">'
            "<caption>Content topics over the window (v2-only: no message originated on v1; v1-only: none on v2; "
            "mixed: both)</caption>"
            '<thead><tr><th scope="col">content topic</th><th scope="col">status</th><th scope="col">from v1</th>'
            '<th scope="col">from v2</th><th scope="col">v2 share</th><th scope="col">last from v1</th>'
            '<th scope="col">last from v2</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></details>")


def render_html(rep: MigrationReport, rows: Iterable[HourlyRow], *, sources: Sequence[str] = ()) -> str:
    """The whole page.  ``rows`` are the hourly aggregates ``rep`` was built from."""
    series = hourly_series(rows, since=rep.since, now=rep.until)
    n = len(rep.days)
    first, last = (rep.days[0].day, rep.days[-1].day) if rep.days else ("–", "–")
    counts = {s: len(rep.by_status(s)) for s in TopicStatus}
    top = sorted(rep.topics, key=lambda t: (-(t.v1_messages + t.v2_messages), t.topic))[:TOP_TOPICS]
    v1, v2 = rep.total.v1_messages, rep.total.v2_messages
    kpis = [("messages from v1", f"{v1:,}"), ("messages from v2", f"{v2:,}"),
            ("v2 share (window)", _pct(rep.total.v2_share)),
            ("topics v2-only / mixed / v1-only",
             f"{counts[TopicStatus.V2_ONLY]} / {counts[TopicStatus.MIXED]} / {counts[TopicStatus.V1_ONLY]}")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may load from elsewhere: the page is self-contained by construction.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>Bridge migration report {first} – {last}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>Waku bridge migration report</h1>",
        f'<p class="sub">{first} to {last} UTC ({n} day{"s" if n != 1 else ""}, today partial); generated '
        f'{_date(rep.until, "%Y-%m-%d %H:%M")} UTC. Origin = the network a bridged message was first published on.'
        "</p>",
        '<div class="kpis">' + "".join(f'<div class="kpi"><span>{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in kpis)
        + "</div>",
        '<section class="card" aria-labelledby="h-share"><h2 id="h-share">v2 share per day</h2>',
        _share_chart(rep), _day_table(rep), "</section>",
        '<section class="card" aria-labelledby="h-rates"><h2 id="h-rates">Messages per hour by direction</h2>',
        _legend([("v1", COLOURS["v1"], "v1 → v2 (originated on v1)"),
                 ("v2", COLOURS["v2"], "v2 → v1 (originated on v2)")]),
        _rates_chart(series, rep.since), "</section>",
        f'<section class="card" aria-labelledby="h-topics"><h2 id="h-topics">Top {len(top)} content topics '
        "by origin</h2>",
        _legend([("v1", COLOURS["v1"], "from v1"), ("v2", COLOURS["v2"], "from v2")]),
        _topics_chart(top) if top else "<p>No bridged traffic in the window.</p>", _topic_table(rep), "</section>",
    ]
    if sources:
        parts.append(f"<footer>Sources: {len(sources)} instance(s): {_e(', '.join(sources))}</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
