"""``waku-bridge report [--data-dir D] [--days N] [--format table|json|html] [-o FILE]``: the migration report.

Reads the hourly aggregates every bridge instance of this data dir persisted
(``D/<peer id>/aggregates.sqlite3``, or ``D/aggregates.sqlite3`` for an instance without a peer
id), read-only, and sums them: with active/standby failover only the active instance bridges, so
the instances' counts partition the traffic.  Two instances that are *both* active each count
what they bridged: point ``--data-dir`` at one instance's directory to avoid counting twice.

``--format html`` writes one self-contained page with charts (bridge/report_html.py); ``-o FILE``
writes any format to FILE instead of stdout (atomically: a reader never sees half a page).

Exit codes: 0 report written, 1 no aggregates found (or unreadable), 2 bad usage.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bridge.aggregates import AGGREGATES_FILE, HourlyRow, read_hourly
from bridge.report import build_report, render_json, render_table, window_start
from bridge.report_html import render_html

__all__ = ["FORMATS", "REPORT_HELP", "find_aggregates", "run_report"]

REPORT_HELP = (
    "Migration report from the hourly aggregates each bridge instance persists in its data dir: "
    "per UTC day (the last --days, today partial) the messages and bytes that originated on each "
    "network and the v2 share (v2-originated / all originated); per content topic over those days: "
    "v2-only = at least one message originated on v2 and none on v1, v1-only = the reverse, "
    "mixed = both.  Instances under --data-dir are summed (with active/standby only the active one "
    "bridges).  --format html writes a self-contained page with charts (use -o FILE).  "
    "Exit 0 ok, 1 no aggregates found, 2 bad usage."
)


def find_aggregates(data_dir: Path) -> list[Path]:
    """The aggregates files of ``data_dir`` itself and of its per-instance subdirectories."""
    own = data_dir / AGGREGATES_FILE
    return ([own] if own.is_file() else []) + sorted(p for p in data_dir.glob(f"*/{AGGREGATES_FILE}") if p.is_file())


FORMATS = ("table", "json", "html")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # a report is for sharing (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_report(data_dir: Path, fmt: str = "table", days: int = 30, *, now: float | None = None,
               out: Path | None = None) -> int:
    if days < 1:
        print("waku-bridge report: --days must be >= 1", file=sys.stderr)
        return 2
    if fmt not in FORMATS:
        print(f"waku-bridge report: unknown --format {fmt!r} ({', '.join(FORMATS)})", file=sys.stderr)
        return 2
    if out is not None and not out.parent.is_dir():
        print(f"waku-bridge report: cannot write {out}: {out.parent} is not a directory", file=sys.stderr)
        return 2
    if not data_dir.is_dir():
        print(f"waku-bridge report: {data_dir} is not a directory", file=sys.stderr)
        return 2
    files = find_aggregates(data_dir)
    if not files:
        print(f"waku-bridge report: no {AGGREGATES_FILE} under {data_dir} (has a bridge run with this --data-dir?)",
              file=sys.stderr)
        return 1
    now = time.time() if now is None else now
    since = window_start(now, days)
    rows: list[HourlyRow] = []
    for f in files:
        try:
            rows += read_hourly(f, since=since)
        except sqlite3.Error as exc:
            print(f"waku-bridge report: cannot read {f}: {exc}", file=sys.stderr)
            return 1
    rep = build_report(rows, now=now, days=days)
    names = [str(f.parent.relative_to(data_dir)) if f.parent != data_dir else "." for f in files]
    if fmt == "json":
        text = render_json(rep)
    elif fmt == "html":
        text = render_html(rep, rows, sources=[f"{data_dir}/{n}" for n in names])
    else:
        text = render_table(rep) + f"\nSources: {len(files)} instance(s) under {data_dir}: {', '.join(names)}\n"
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        _write_atomic(out, text)
    except OSError as exc:
        print(f"waku-bridge report: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    print(f"waku-bridge report: wrote {out} ({len(text.encode()):,} bytes)", file=sys.stderr)
    return 0
