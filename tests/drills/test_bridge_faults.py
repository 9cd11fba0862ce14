"""Bridge-process faults with the SQLite lease (TTL 3 s), under 100 msg/s each way from js-waku and
@ethereumjs/devp2p: SIGKILL, SIGTERM and SIGSTOP-longer-than-TTL of the active, each twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from tests.helpers.drill_scenario import bridge_sigkill, bridge_sigstop, bridge_sigterm, repeat_fault
from tests.helpers.drillnet import DrillNet

pytestmark = [pytest.mark.drill, pytest.mark.interop, pytest.mark.slow]


def _counter(text: str, name: str) -> float:
    """The sum of a counter's samples in a /metrics text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _net(tmp_path: Path) -> DrillNet:
    return DrillNet(tmp_path, f"sqlite:{tmp_path / 'failover.sqlite3'}", ttl=3.0)


async def test_sigkill_of_the_active(nursery: trio.Nursery, tmp_path: Path) -> None:
    net = _net(tmp_path)
    try:
        await net.start(nursery)
        for r in await repeat_fault(net, bridge_sigkill):
            assert r["restarted_as"] == "standby" and r["active_after"] != r["fault_on"]
    finally:
        await net.aclose()


async def test_sigterm_of_the_active(nursery: trio.Nursery, tmp_path: Path) -> None:
    net = _net(tmp_path)
    try:
        await net.start(nursery)
        for r in await repeat_fault(net, bridge_sigterm):
            assert r["restarted_as"] == "standby" and r["active_after"] != r["fault_on"]
    finally:
        await net.aclose()


async def test_sigstop_longer_than_ttl(nursery: trio.Nursery, tmp_path: Path) -> None:
    net = _net(tmp_path)
    try:
        await net.start(nursery)
        for r in await repeat_fault(net, bridge_sigstop, burst=7.0):
            assert r["active_after"] != r["fault_on"]
    finally:
        await net.aclose()


async def test_cold_standby_echo(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The standby is killed, misses 1 s of traffic, restarts, and takes over at once: its v1 hub
    re-offers the translations of v2 messages it never saw; the sink history (the witness's
    store) shows they exist on v2, so none is bridged back (docs/operations.md#warm-standby)."""
    net = _net(tmp_path)
    try:
        await net.start(nursery)
        active, _ = await net.one_active()
        standby = next(b for b in net.bridges if b is not active)
        await trio.to_thread.run_sync(standby.kill, signal.SIGKILL)
        await net.traffic(1.0)
        await trio.to_thread.run_sync(standby.start)
        await net.settle()  # connected again: its v1 hub re-offered the pool
        await trio.to_thread.run_sync(active.kill, signal.SIGKILL)
        await net.wait_active(standby)
        await net.traffic(1.0)
        await net.drained()
        assert not net.ledger.problems(), net.ledger.problems()[:5]
        skipped = _counter(await trio.to_thread.run_sync(standby.metrics), "waku_bridge_takeover_skipped_total")
        assert skipped > 0  # the re-offered translations were there, and were recognised
    finally:
        await net.aclose()
