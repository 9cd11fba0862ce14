"""`waku-bridge demo` runs on loopback and ends with a delivered-exactly-once summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_demo_short_run() -> None:
    r = subprocess.run([sys.executable, "-m", "bridge.app.cli", "demo", "--duration", "6", "--rate", "10",
                        "--no-failover"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every message delivered exactly once" in r.stdout
    assert "Traceback" not in r.stderr, r.stderr[-4000:]  # py-libp2p's shutdown noise included (v2/host.py)
