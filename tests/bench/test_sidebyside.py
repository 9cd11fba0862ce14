"""bench/sidebyside.py with a handful of messages: go-waku and our relay as processes, and the
bridge between status-go and go-waku, report what docs/performance.md "Side by side with go-waku
and status-go" records (fields and accounting only; the figures are measured, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sidebyside

ROOT = Path(__file__).resolve().parents[2]


def test_help_describes_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "sidebyside", "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "--bridge-rates" in out and "--part" in out


@pytest.mark.interop
@pytest.mark.slow
async def test_relay_runs_of_both_implementations_and_their_ratio() -> None:
    r = await sidebyside.run("relay", messages=40, rate=100.0)
    json.dumps(r)  # one JSON line
    relay = r["relay"]
    for impl in ("gowaku", "ours"):
        assert set(relay[impl]) == {"max", "rate_100"}
        for run in relay[impl].values():
            assert run["impl"] == impl and run["sent"] == 40
            assert run["delivered"] > 0 and run["delivered"] + run["lost"] == 40
            assert set(run["cpu_us_per_msg"]) == {"publisher", "receiver", "total"}
    assert set(relay["ratio_ours_over_gowaku"]) == {"max", "rate_100"}
    assert len(relay["load_avg"]["start"]) == 3


@pytest.mark.interop
@pytest.mark.slow
async def test_bridge_between_status_go_and_go_waku_reports_each_direction() -> None:
    r = await sidebyside.run("bridge", bridge_rates=(20.0,), step_seconds=2.0)
    json.dumps(r)
    (step,) = r["bridge"]["steps"]
    for d in ("v1_to_v2", "v2_to_v1"):
        assert step["sent"][d] == 40
        assert step["delivered"][d] > 0  # the bridge carried traffic both ways between the Go peers
        assert step["delivered"][d] + step["lost"][d] == 40
    assert step["cpu_us_per_msg"]["bridge"] is not None
    assert r["bridge"]["max_rate_zero_loss"] in (None, 20.0)
