"""deploy/bridge.example.yaml is what operators copy: it must pass ``waku-bridge check-config``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_validates() -> None:
    out = subprocess.run([sys.executable, "-m", "bridge.app.cli", "check-config",
                          str(ROOT / "deploy" / "bridge.example.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(": ok")
