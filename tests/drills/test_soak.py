"""The churn soak of bench/soak.py in its short CI shape (docs/reliability.md "Soak with churn").

status-go v1.1.0 x2 <-> bridge A + standby B (SQLite lease) <-> go-waku v0.10.0 x2, 20 msg/s each
way for 2 minutes from the bench's own v1 and v2 nodes, a Go peer killed with SIGKILL and
restarted every 20-40 s and the active faulted every 60 s: every marker reaches the far side
exactly once (no loss outside a window with no live peer, which this schedule never makes), no
echo, at least one takeover with a higher fencing token, at least two peer restarts.  The
one-hour run at 250 msg/s is the same harness with its defaults (``python -m bench soak``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import SoakConfig, run

pytestmark = [pytest.mark.drill, pytest.mark.interop, pytest.mark.slow]

DIRS = ("v1_to_v2", "v2_to_v1")


async def test_soak_with_churn_short(tmp_path: Path) -> None:
    r = await run(SoakConfig(rate=20, minutes=2, churn_min=20, churn_max=40, failover_every=60, seed=13,
                             workdir=tmp_path))
    summary = json.dumps({k: v for k, v in r.items() if k != "events"})
    events = "\n".join(json.dumps(e) for e in r["events"])
    why = f"{summary}\n--- events\n{events}"
    assert all(r["sent"][d] == 2400 for d in DIRS), why
    assert all(r["lost_unexpected"][d] == 0 for d in DIRS), why
    assert all(r["doubled"][d] == 0 and r["echoes"][d] == 0 for d in DIRS), why
    assert r["side_down_windows"] == {"v1": [], "v2": []}, why  # a side always kept a live peer
    assert all(r["delivered"][d] == 2400 for d in DIRS), why
    assert len(r["takeovers"]) >= 1 and r["fencing_increasing"], why
    assert r["churn_events"] >= 2 and r["peers_not_relinked"] == 0 and r["errors"] == [], why
    assert all(t["token_after"] > t["token_before"] for t in r["takeovers"]), why
