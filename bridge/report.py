"""The migration report: pure aggregation of hourly rows into days and topic classes (``now`` passed in).

Window: the last ``days`` UTC calendar days, today included (today is partial).  Per day: the
messages and bytes that originated on each network and the v2 share (v2-originated / all
originated).  Per content topic, over the whole window:

* **v2-only**: at least one message originated on v2 and none on v1 — its senders have migrated
  (or it was born on v2); switching v1 off loses nothing on it;
* **v1-only**: at least one message originated on v1 and none on v2 — nobody on it has moved yet;
* **mixed**: messages originated on both networks — the bridge is still needed for it.

A topic with no traffic in the window is not listed.  ``other`` collects topics beyond the
per-hour cardinality cap of the aggregates (see bridge/aggregates.py) and is classified like any
topic, so a v2-only verdict is only as good as the topics it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import Enum

from bridge.aggregates import HOUR, HourlyRow

__all__ = ["DAY", "DayTotals", "MigrationReport", "TopicStatus", "TopicSummary", "build_report", "render_json",
           "render_table", "window_start"]

DAY = 24 * HOUR


class TopicStatus(Enum):
    V2_ONLY = "v2-only"
    V1_ONLY = "v1-only"
    MIXED = "mixed"


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: str  # YYYY-MM-DD (UTC)
    v1_messages: int
    v2_messages: int
    v1_bytes: int
    v2_bytes: int

    @property
    def messages(self) -> int:
        return self.v1_messages + self.v2_messages

    @property
    def v2_share(self) -> float | None:
        return self.v2_messages / self.messages if self.messages else None


@dataclass(frozen=True, slots=True)
class TopicSummary:
    topic: str
    status: TopicStatus
    v1_messages: int
    v2_messages: int
    v1_bytes: int
    v2_bytes: int
    last_v1: int | None  # unix seconds of the last hour with v1-originated traffic
    last_v2: int | None

    @property
    def v2_share(self) -> float:
        return self.v2_messages / (self.v1_messages + self.v2_messages)


@dataclass(frozen=True, slots=True)
class MigrationReport:
    since: int  # unix seconds: start of the first day
    until: float  # now
    days: tuple[DayTotals, ...]
    total: DayTotals  # day = "total"
    topics: tuple[TopicSummary, ...]  # ordered by status (v2-only, mixed, v1-only), then volume

    def by_status(self, status: TopicStatus) -> list[str]:
        return [t.topic for t in self.topics if t.status is status]


def window_start(now: float, days: int) -> int:
    """Unix seconds at 00:00 UTC of the first of the last ``days`` days (today included)."""
    if days < 1:
        raise ValueError("days must be >= 1")
    return int(now // DAY) * DAY - (days - 1) * DAY


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def build_report(rows: Iterable[HourlyRow], *, now: float, days: int) -> MigrationReport:
    since = window_start(now, days)
    per_day: dict[int, list[int]] = {since + i * DAY: [0, 0, 0, 0] for i in range(days)}
    per_topic: dict[str, list[int]] = {}  # v1 count, v2 count, v1 bytes, v2 bytes, last v1, last v2
    for r in rows:
        if r.hour < since or r.hour > now:
            continue
        v2 = 1 if r.origin == "v2" else 0
        d = per_day.setdefault(r.hour // DAY * DAY, [0, 0, 0, 0])
        d[v2] += r.count
        d[2 + v2] += r.bytes
        t = per_topic.setdefault(r.topic, [0, 0, 0, 0, -1, -1])
        t[v2] += r.count
        t[2 + v2] += r.bytes
        if r.count:
            t[4 + v2] = max(t[4 + v2], r.hour)
    day_rows = tuple(DayTotals(_day(ts), *v) for ts, v in sorted(per_day.items()))
    total = DayTotals("total", *(sum(d[i] for d in per_day.values()) for i in range(4)))
    topics = []
    for name, (c1, c2, b1, b2, l1, l2) in per_topic.items():
        if c1 + c2 == 0:
            continue
        status = TopicStatus.MIXED if c1 and c2 else TopicStatus.V2_ONLY if c2 else TopicStatus.V1_ONLY
        topics.append(TopicSummary(name, status, c1, c2, b1, b2, l1 if l1 >= 0 else None, l2 if l2 >= 0 else None))
    order = {TopicStatus.V2_ONLY: 0, TopicStatus.MIXED: 1, TopicStatus.V1_ONLY: 2}
    topics.sort(key=lambda t: (order[t.status], -(t.v1_messages + t.v2_messages), t.topic))
    return MigrationReport(since, now, day_rows, total, tuple(topics))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _ts(x: int | None) -> str:
    return "-" if x is None else datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:00")


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` columns left-aligned, the rest right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        cells = (c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def render_table(rep: MigrationReport) -> str:
    n = len(rep.days)
    first, last = (rep.days[0].day, rep.days[-1].day) if rep.days else ("-", "-")
    out = [f"Bridge migration report: {first} .. {last} UTC ({n} day{'s' if n != 1 else ''}, today partial)",
           "Origin = the network a bridged message was first published on.", ""]
    day_rows = [[d.day, f"{d.v1_messages:,}", f"{d.v2_messages:,}", f"{d.v1_bytes:,}", f"{d.v2_bytes:,}",
                 _pct(d.v2_share)] for d in (*rep.days, rep.total)]
    out += _table(["day", "from v1", "from v2", "v1 bytes", "v2 bytes", "v2 share"], day_rows)
    out.append("")
    counts = {s: len(rep.by_status(s)) for s in TopicStatus}
    out.append(f"Content topics over the {n} day{'s' if n != 1 else ''}: {counts[TopicStatus.V2_ONLY]} v2-only, "
               f"{counts[TopicStatus.MIXED]} mixed, {counts[TopicStatus.V1_ONLY]} v1-only "
               "(v2-only: no message originated on v1; v1-only: none on v2; mixed: both)")
    if rep.topics:
        out.append("")
        topic_rows = [[t.topic, t.status.value, f"{t.v1_messages:,}", f"{t.v2_messages:,}", _pct(t.v2_share),
                       _ts(t.last_v1), _ts(t.last_v2)] for t in rep.topics]
        out += _table(["content topic", "status", "from v1", "from v2", "v2 share", "last from v1", "last from v2"],
                      topic_rows, left=2)
    return "\n".join(out) + "\n"


def _day_json(d: DayTotals) -> dict[str, object]:
    return {**asdict(d), "messages": d.messages, "v2_share": d.v2_share}


def render_json(rep: MigrationReport) -> str:
    doc = {
        "since": rep.since,
        "until": rep.until,
        "days": [_day_json(d) for d in rep.days],
        "total": {k: v for k, v in _day_json(rep.total).items() if k != "day"},
        "topics": [{**asdict(t), "status": t.status.value, "v2_share": t.v2_share} for t in rep.topics],
        "v2_only": rep.by_status(TopicStatus.V2_ONLY),
        "v1_only": rep.by_status(TopicStatus.V1_ONLY),
        "mixed": rep.by_status(TopicStatus.MIXED),
    }
    return json.dumps(doc, indent=1) + "\n"
