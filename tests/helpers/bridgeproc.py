"""Real bridge processes for tests and drills: start, signal, and read ``/status`` of ``waku-bridge``.

Each instance is ``python -m bridge.app.cli --peer-id NAME ...`` with its own ports and state dir,
sharing one failover backend (``--failover sqlite:PATH`` or ``etcd://...``).  stderr goes to a log
file in the instance's dir, so a failed drill can show what the process said.  ``host`` and
``prefix`` place it elsewhere than loopback: its listen and HTTP address, and the argv it is run
behind (``ip netns exec NS``, tests/helpers/netns.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.net import LOOPBACK, free_ports
from tests.helpers.wait import poll_until

__all__ = ["ROOT", "BridgeProc"]

ROOT = Path(__file__).resolve().parents[2]


class BridgeProc:
    def __init__(self, name: str, data_dir: Path, v1_static: list[str], v2_static: list[str], *,
                 failover: str | None, failover_ttl: float = 3.0, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, host: str = LOOPBACK,
                 prefix: list[str] | None = None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.ports = free_ports(4)
        p1, p2, ws, http = self.ports
        self.url = f"http://{host}:{http}"
        self.args = [*(prefix or []), sys.executable, "-m", "bridge.app.cli", "--peer-id", name,
                     "--listen-address", host, "--metrics-server-address", host,
                     "--devp2p-tcp-port", str(p1), "--libp2p-tcp-port", str(p2), "--websocket-port", str(ws),
                     "--metrics-server-port", str(http), "--data-dir", str(data_dir), "--cluster-id", "0",
                     "--num-shards-in-network", "1", "--waku-v1-pow", "0.002", "--log-level", "info"]
        for s in v1_static:
            self.args += ["--staticnode-v1", s]
        for s in v2_static:
            self.args += ["--staticnode-v2", s]
        if failover is not None:
            self.args += ["--failover", failover, "--failover-ttl", str(failover_ttl)]
        self.args += extra or []
        self.env = env or {}  # extra environment (e.g. the TEST-ONLY fault hook of test_audit_drop.py)
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self.stopped = False

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **self.env})
        log.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"bridge {self.name} did not start:\n{self.log_tail()}")
        self.info = json.loads(line)
        self.stopped = False

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """``/status``, or None if the process does not answer (killed, stopped, starting)."""
        if not self.alive() or self.stopped:
            return None
        try:
            data: dict[str, Any] = httpx.get(self.url + "/status", timeout=timeout).json()
            return data
        except (httpx.HTTPError, ValueError):
            return None

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
                self.stopped = False
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def wait_status(self, pred: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The first ``/status`` satisfying ``pred`` (blocking: call it from a worker thread)."""
        try:
            return poll_until(self.status, pred, timeout, f"bridge {self.name}'s status")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
