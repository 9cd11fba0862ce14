"""Disk faults of a real bridge process: its data dir on a small real tmpfs filled by a ballast file
while messages flow both ways, and damaged state files at start (docs/operations.md#disk-errors).

Full disk (kept full: the ballast takes back whatever SQLite frees): the bridge keeps bridging
(every message still reaches the other side), counts ``waku_bridge_disk_errors_total{store}``,
reports ``disk_ok``, the failing stores and the unsaved dedup keys in ``/status``, and once the
ballast is gone saves those keys by itself: after a clean stop, the ledger on disk holds the key of
every message bridged before, during and after; the default SQLite lease in the same data dir
keeps renewing.  A restart on the full disk starts, with the ledger's keys.  With a standby whose
disk works, the active steps down for it (the ``disk`` side of the health).

Damaged files: for each file kind, the process exits 78 with one log line naming the file and what
to do, and no traceback; ``--quarantine-corrupt`` moves a damaged ledger aside and starts.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from bridge.translate import Unsealed, dedup_key, v2_to_v1
from tests.helpers.bridgeproc import ROOT, BridgeProc
from tests.helpers.net import free_ports
from tests.helpers.tmpfs import fill, tmpfs
from tests.helpers.wait import wait_until
from v1.node import V1Node, V1NodeConfig
from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce
from v2.core.message import WakuMessage
from v2.node import V2Node, V2NodeConfig

pytestmark = [pytest.mark.drill, pytest.mark.slow]

TOPIC = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"
N = 20  # messages per direction per phase


def _counter(text: str, name: str, labels: str = "") -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + ("{" + labels if labels else "")))


class Peers:
    """A v1 node and a v2 node of our own on each side of the bridges, recording what reaches them
    (dedup keys: the same for an original and its translation)."""

    def __init__(self) -> None:
        self.v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1), CollectorRegistry())
        tcp, ws = free_ports(2)
        self.v2 = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, True, ws), CollectorRegistry())
        self.on_v1: set[bytes] = set()
        self.on_v2: set[bytes] = set()
        self.sent_v1: set[bytes] = set()  # keys originated on v1 (must reach v2), and the other way
        self.sent_v2: set[bytes] = set()
        self.n = 0

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.v1.run)
        await nursery.start(self.v2.run)
        nursery.start_soon(self._collect_v1)
        nursery.start_soon(self._collect_v2)

    async def _collect_v1(self) -> None:
        async for rec in self.v1.inbound():
            self.on_v1.add(dedup_key(rec.envelope.topic, rec.envelope.data))

    async def _collect_v2(self) -> None:
        async for m in self.v2.messages():
            u = v2_to_v1(m.message, now=time.time(), ttl=10, max_skew=60)
            if isinstance(u, Unsealed):
                self.on_v2.add(u.key)

    async def send(self, n: int = N) -> tuple[set[bytes], set[bytes]]:
        """``n`` messages each way; returns their keys (v1-originated, v2-originated)."""
        from_v1, from_v2 = set(), set()
        for _ in range(n):
            self.n += 1
            data = b"disk drill v1 %d " % self.n + os.urandom(4)
            now = int(time.time())
            nonce = mine_smallest_nonce(now + 60, 60, TOPIC, data, 0.002)
            assert nonce is not None
            assert (await self.v1.post(Envelope(now + 60, 60, TOPIC, data, nonce))).accepted
            from_v1.add(dedup_key(TOPIC, data))
            payload = b"disk drill v2 %d " % self.n + os.urandom(4)
            await self.v2.publish(PUBSUB, WakuMessage(payload, CONTENT, version=1, timestamp=time.time_ns()))
            from_v2.add(dedup_key(TOPIC, payload))
            await trio.sleep(0.02)
        self.sent_v1 |= from_v1
        self.sent_v2 |= from_v2
        return from_v1, from_v2

    async def delivered(self, keys: tuple[set[bytes], set[bytes]], what: str, timeout: float = 60) -> None:
        from_v1, from_v2 = keys
        await wait_until(lambda: from_v1 <= self.on_v2 and from_v2 <= self.on_v1, timeout,
                         f"{what}: every message bridged ({len(from_v1 - self.on_v2)} v1->v2 and "
                         f"{len(from_v2 - self.on_v1)} v2->v1 missing)")


class Ballast:
    """Fills the file system and keeps it full: SQLite gives back the pages of a write that failed,
    so a disk filled once has room again a moment later (as on a host where something else keeps
    writing, the ballast takes what is freed, every 50 ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._done.set()  # not topping up
        self._dev = os.stat(path.parent).st_dev  # the tmpfs: never top up anything else

    async def fill(self, nursery: trio.Nursery) -> None:
        self.size = await trio.to_thread.run_sync(fill, self.path)
        self._done = trio.Event()
        nursery.start_soon(self._top_up)

    async def _top_up(self) -> None:
        try:
            with self._scope:
                while os.stat(self.path.parent).st_dev == self._dev:
                    await trio.sleep(0.05)
                    self.size += await trio.to_thread.run_sync(fill, self.path)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop topping up, and wait for a top-up in its thread to finish (it could otherwise create
        the ballast again after :meth:`remove`, or write after the unmount)."""
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._done.wait()

    async def remove(self) -> None:
        await self.stop()
        self.path.unlink()


def _status(b: BridgeProc) -> dict[str, Any]:
    return b.status(timeout=5) or {}


async def _until_status(b: BridgeProc, pred: Callable[[dict[str, Any]], object], what: str,
                        timeout: float = 60) -> dict[str, Any]:
    await wait_until(lambda: bool(pred(_status(b))), timeout, f"{b.name}: {what}")
    return _status(b)


async def _connected(peers: Peers, *bridges: BridgeProc) -> None:
    for b in bridges:
        await _until_status(b, lambda s: s.get("peers") == {"v1": 1, "v2": 1}, "connected")
    await wait_until(lambda: len(peers.v2.relay.mesh_peers(PUBSUB)) >= len(bridges), 60, "bridges in the mesh")
    for b in bridges:  # past the warm-up (bridge/standby.py) and a mesh heartbeat
        await _until_status(b, lambda s: (s.get("uptime_s") or 0) > 6, "warm")
    await trio.sleep(1.5)


def _ledger_keys(path: Path) -> set[bytes]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {k for (k,) in conn.execute("SELECT key FROM dedup")}
    finally:
        conn.close()


async def test_full_data_dir_keeps_bridging_counts_and_recovers(nursery: trio.Nursery, tmp_path: Path) -> None:
    peers = Peers()
    await peers.start(nursery)
    with tmpfs(tmp_path / "data", "8m") as data:
        # The log stays off the tmpfs (stderr goes to the journal in production, not the data dir);
        # the lease is the default one, <data dir>/failover.sqlite3, on the tmpfs too.
        a = BridgeProc("A", tmp_path / "A", [peers.v1.enode], [peers.v2.listen_addrs[0]], failover=None,
                       extra=["--data-dir", str(data), "--store"])
        ballast = Ballast(data / "ballast")
        try:
            await trio.to_thread.run_sync(a.start)
            await _until_status(a, lambda s: s.get("role") == "active", "active")
            await _connected(peers, a)
            await peers.delivered(await peers.send(), "before the disk fills")
            st = _status(a)
            assert st["disk_ok"] is True and st["disk"]["reason"] is None
            token = st["fencing_token"]

            await ballast.fill(nursery)
            assert os.statvfs(data).f_bavail == 0
            during = await peers.send()
            await peers.delivered(during, "on a full disk")  # still bridging, nothing lost
            # SQLite gives back the pages of a failed write, so a write may fit between two top-ups
            # and a store may recover for a moment: the counters are what must have risen.
            st = await _until_status(a, lambda s: s.get("disk", {}).get("errors", {}).get("dedup", 0) > 0,
                                     "dedup write errors counted")
            assert st["role"] == "active"
            assert st["transfers"]["v1_to_v2"] >= 2 * N and st["transfers"]["v2_to_v1"] >= 2 * N
            metrics = await trio.to_thread.run_sync(a.metrics)
            assert _counter(metrics, "waku_bridge_disk_errors_total", 'store="dedup"') > 0
            assert "waku_bridge_disk_ok " in metrics and "waku_bridge_dedup_unsaved " in metrics
            # The archive's inserts fail too (the same file system): counted, the messages relayed.
            await wait_until(lambda: _counter(a.metrics(), "waku_bridge_disk_errors_total", 'store="archive"') > 0,
                             30, "archive insert failures counted")
            await peers.delivered(await peers.send(5), "still on a full disk")

            await ballast.remove()
            # A store is known to work again once a write succeeds: the archive's next insert, the
            # dedup ledger's retry of its unsaved keys (after the backoff, at most 30 s).
            await peers.delivered(await peers.send(), "after the ballast is gone")
            st = await _until_status(a, lambda s: s.get("disk_ok") is True and s.get("dedup_unsaved") == 0,
                                     "recovered (disk ok, unsaved keys saved)", timeout=90)
            assert st["disk"]["errors"]["dedup"] > 0  # the history stays in the counters
            # The lease kept renewing all along (its WAL is reused, never grown: failover/sqlite_backend.py).
            assert st["role"] == "active" and st["fencing_token"] == token
            metrics = await trio.to_thread.run_sync(a.metrics)
            assert _counter(metrics, "waku_bridge_step_downs_total") == 0
            assert _counter(metrics, "waku_bridge_failover_errors_total") == 0
        finally:
            await ballast.stop()  # before the tmpfs goes: the top-up must never reach the disk below
            await trio.to_thread.run_sync(a.kill, signal.SIGTERM)
        assert a.proc is not None and a.proc.returncode == 0, a.log_tail()
        log = a.log_path.read_text()
        assert "Traceback" not in log and "dedup ledger: commit to" in log and "takes writes again" in log
        # Nothing accepted was lost: every key bridged before, during and after is in the ledger file.
        keys = _ledger_keys(data / "A" / "bridge.sqlite3")
        missing = (peers.sent_v1 | peers.sent_v2) - keys
        assert not missing, f"{len(missing)} of {len(peers.sent_v1 | peers.sent_v2)} keys not in the ledger"
        assert ballast.size > 4_000_000  # the data dir used little of the 8 MiB before


async def test_restart_on_a_full_disk_starts_knows_its_keys_and_recovers(nursery: trio.Nursery,
                                                                         tmp_path: Path) -> None:
    """A restart while the disk is full (the unit restarts a crashed process): SQLite cannot even
    create the WAL index, yet the bridge starts with the keys of the ledger (read immutable), runs
    without its archive (opened once space is back) and bridges."""
    peers = Peers()
    await peers.start(nursery)
    with tmpfs(tmp_path / "data", "8m") as data:
        def bridge() -> BridgeProc:
            return BridgeProc("A", tmp_path / "A", [peers.v1.enode], [peers.v2.listen_addrs[0]], failover="none",
                              extra=["--data-dir", str(data), "--store"])

        a = bridge()
        try:
            await trio.to_thread.run_sync(a.start)
            await _connected(peers, a)
            first = await peers.send()
            await peers.delivered(first, "before the restart")
        finally:
            await trio.to_thread.run_sync(a.kill, signal.SIGTERM)
        ballast = Ballast(data / "ballast")
        a = bridge()
        try:
            await ballast.fill(nursery)
            await trio.to_thread.run_sync(a.start)
            st = await _until_status(a, lambda s: "archive" in s.get("disk", {}).get("failing", {}),
                                     "the archive's open failing")
            assert st["dedup_size"] == 2 * N  # the keys from before the restart: no message bridged twice
            assert st["disk_ok"] is False and st["disk"]["errors"]["dedup"] > 0
            await _connected(peers, a)
            await peers.delivered(await peers.send(), "on a full disk after the restart")
            await ballast.remove()
            await peers.delivered(await peers.send(), "after the ballast is gone")
            await _until_status(a, lambda s: s.get("disk_ok") is True and s.get("dedup_unsaved") == 0,
                                "recovered", timeout=90)
            metrics = await trio.to_thread.run_sync(a.metrics)
            assert _counter(metrics, "waku_archive_errors_total", 'type="open_failure"') >= 1
            assert _counter(metrics, "waku_archive_messages", 'type="stored"') > 0  # the archive is open
        finally:
            await ballast.stop()  # before the tmpfs goes: the top-up must never reach the disk below
            await trio.to_thread.run_sync(a.kill, signal.SIGTERM)
        assert a.proc is not None and a.proc.returncode == 0
        assert "Traceback" not in a.log_path.read_text()
        assert (peers.sent_v1 | peers.sent_v2) <= _ledger_keys(data / "A" / "bridge.sqlite3")


async def test_active_with_a_full_disk_steps_down_for_a_healthy_standby(nursery: trio.Nursery,
                                                                         tmp_path: Path) -> None:
    peers = Peers()
    await peers.start(nursery)
    lease = f"sqlite:{tmp_path / 'failover.sqlite3'}"  # on the good disk: both instances can renew
    health = ["--failover-unhealthy-after", "2"]
    with tmpfs(tmp_path / "data-a", "8m") as data_a:
        a = BridgeProc("A", tmp_path / "A", [peers.v1.enode], [peers.v2.listen_addrs[0]], failover=lease,
                       extra=["--data-dir", str(data_a), *health])
        b = BridgeProc("B", tmp_path / "B", [peers.v1.enode], [peers.v2.listen_addrs[0]], failover=lease,
                       extra=health)
        ballast = Ballast(data_a / "ballast")
        try:
            await trio.to_thread.run_sync(a.start)
            await _until_status(a, lambda s: s.get("role") == "active", "active")
            await trio.to_thread.run_sync(b.start)
            await _connected(peers, a, b)
            await _until_status(b, lambda s: s.get("health") == {"v1": True, "v2": True, "disk": True}, "healthy")
            await peers.delivered(await peers.send(), "before the disk fills")
            await ballast.fill(nursery)
            t0 = time.monotonic()
            while _status(b).get("role") != "active":  # writes must fail for the disk to count as bad
                assert time.monotonic() - t0 < 90, a.log_tail()
                await peers.send(2)
                await trio.sleep(0.2)
            st = await _until_status(a, lambda s: s.get("role") == "standby", "standby")
            assert st["disk"]["errors"]["dedup"] > 0
            assert "A resigns: unhealthy {'v1': True, 'v2': True, 'disk': False}" in a.log_tail(10**6)
            metrics = await trio.to_thread.run_sync(a.metrics)
            assert _counter(metrics, "waku_bridge_step_downs_total", 'reason="unhealthy"') >= 1
            await peers.delivered(await peers.send(), "after the hand-over")
            await peers.delivered((peers.sent_v1, peers.sent_v2), "everything sent", timeout=30)
            await ballast.remove()
            await _until_status(a, lambda s: s.get("disk_ok") is True and s["health"]["disk"] is True,
                                "disk healthy again", timeout=90)
        finally:
            await ballast.stop()  # before the tmpfs goes: the top-up must never reach the disk below
            for x in (a, b):
                await trio.to_thread.run_sync(x.kill, signal.SIGTERM)
        assert "Traceback" not in a.log_tail(10**6)


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(32 * 1024))


def truncated(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(os.urandom(32), os.urandom(200)) for _ in range(3000)])
    conn.commit()
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])


def not_sqlite(path: Path) -> None:
    path.write_text("#!/bin/sh\necho this is not a database\n" * 100)


CASES = {  # file (relative to the data dir), damage, extra flags
    "dedup ledger, garbage": ("A/bridge.sqlite3", garbage, []),
    "aggregates, truncated": ("A/aggregates.sqlite3", truncated, []),
    "lease, not SQLite": ("failover.sqlite3", not_sqlite, []),
    "store archive, truncated": ("A/store.sqlite3", truncated, ["--store"]),
}


def _run_once(tmp_path: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    b = BridgeProc("A", tmp_path / "data", [], [], failover=None, extra=extra)
    return subprocess.run(b.args, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_state_file_exits_78_with_one_clear_line(tmp_path: Path, case: str) -> None:
    rel, damage, extra = CASES[case]
    path = tmp_path / "data" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    damage(path)
    r = _run_once(tmp_path, extra)
    assert r.returncode == 78, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if "not a usable SQLite database" in line]
    assert len(errors) == 1, r.stderr
    assert str(path) in errors[0] and f"mv {path} {path}.corrupt" in errors[0]
    assert path.exists()  # left for the operator to look at


def test_quarantine_corrupt_moves_the_ledger_aside_and_starts(tmp_path: Path) -> None:
    path = tmp_path / "data" / "A" / "bridge.sqlite3"
    path.parent.mkdir(parents=True)
    garbage(path)
    b = BridgeProc("A", tmp_path / "data", [], [], failover=None, extra=["--quarantine-corrupt"])
    try:
        b.start()  # its first stdout line: it is up
        moved = list(path.parent.glob("bridge.sqlite3.corrupt-*"))
        assert len(moved) == 1 and moved[0].read_bytes()[:16] != b"SQLite format 3\0"
        st = b.wait_status(lambda s: s.get("disk_ok") is True)
        assert st["dedup_size"] == 0
    finally:
        b.kill(signal.SIGTERM)
    assert b.proc is not None and b.proc.returncode == 0
    log = b.log_tail(10**6)
    assert "moved to" in log and "bridged once more" in log and "Traceback" not in log
    assert _ledger_keys(path) == set()  # a fresh, valid ledger
