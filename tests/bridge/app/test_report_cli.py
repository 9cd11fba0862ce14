"""``waku-bridge report`` as a real process, on a data dir written by the aggregates writer of two
instances (A active for three simulated days, then B after a failover) ending yesterday."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bridge.report import DAY, window_start
from tests.helpers.aggregates import CHAT, LEGACY, NEW, simulate

ROOT = Path(__file__).resolve().parents[3]


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.app.cli", "report", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


async def test_report_cli_on_two_instances(tmp_path: Path) -> None:
    data = tmp_path / "data"
    start = window_start(time.time(), 7)  # simulated days 0..5, then today (empty so far)
    await simulate(data / "A" / "aggregates.sqlite3", 3, start=start)
    await simulate(data / "B" / "aggregates.sqlite3", 3, start=start, first_day=3)

    out = report("--data-dir", str(data), "--days", "7", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    days = doc["days"]
    assert len(days) == 7 and days[-1]["messages"] == 0
    assert [(d["v1_messages"], d["v2_messages"]) for d in days[:6]] == [
        (120, 0), (120, 0), (72, 48), (72, 72), (48, 96), (48, 96)]
    assert days[2]["v2_share"] == 0.4
    assert doc["total"]["v1_messages"] == 480 and doc["total"]["v2_messages"] == 312
    assert doc["total"]["v2_bytes"] == 31_200
    assert doc["mixed"] == [CHAT] and doc["v2_only"] == [NEW] and doc["v1_only"] == [LEGACY]

    out = report("--data-dir", str(data), "--days", "3", "--format", "json")  # days 4, 5 and today
    doc = json.loads(out.stdout)
    assert doc["v2_only"] == [CHAT, NEW] and doc["v1_only"] == [LEGACY] and doc["mixed"] == []

    out = report("--data-dir", str(data), "--days", "7")  # the table
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    day3 = time.strftime("%Y-%m-%d", time.gmtime(start + 3 * DAY))
    row = next(line for line in lines if line.startswith(day3)).split()
    assert row[1:3] == ["72", "72"] and row[-2:] == ["50.0", "%"]
    total = next(line for line in lines if line.startswith("total")).split()
    assert total[1:3] == ["480", "312"]
    assert "1 v2-only, 1 mixed, 1 v1-only" in out.stdout
    assert "Sources: 2 instance(s)" in out.stdout and "A, B" in out.stdout


def test_report_cli_errors(tmp_path: Path) -> None:
    assert report("--data-dir", str(tmp_path / "missing")).returncode == 2
    empty = report("--data-dir", str(tmp_path))
    assert empty.returncode == 1 and "no aggregates.sqlite3" in empty.stderr
    assert report("--data-dir", str(tmp_path), "--days", "0").returncode == 2
