"""The command line as an operator uses it: a real subprocess of the installed entry point."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "bridge.app.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})


def test_check_config_ok_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("peer_id: A\nv1:\n  pow: 0.2\n")
    r = run("check-config", str(good), "--show")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.split("\n", 1)[1])["v1"]["pow"] == 0.2
    bad = tmp_path / "bad.yaml"
    bad.write_text("v1:\n  pow: nope\nv2:\n  tcp_port: -3\n")
    r = run("check-config", str(bad))
    assert r.returncode == 2
    assert "v1.pow" in r.stderr and "v2.tcp_port" in r.stderr


def test_keygen_writes_0600_and_prints_identities(tmp_path: Path) -> None:
    out = tmp_path / "k" / "nodekey"
    r = run("keygen", "--out", str(out))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert info["enode"].startswith("enode://") and info["peer_id"].startswith("16Uiu2")
    assert run("keygen", "--out", str(out)).returncode == 2  # never overwrites silently


def test_run_without_peer_id_is_usage_error() -> None:
    r = run("--log-level", "info")
    assert r.returncode == 2 and "--peer-id" in r.stderr


def test_bad_flag_value_reports_key() -> None:
    r = run("--peer-id", "A", "--waku-v1-pow", "lots")
    assert r.returncode == 2 and "v1.pow" in r.stderr
