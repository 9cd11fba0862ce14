"""``waku-bridge drill`` against a running pair of bridge processes (SQLite lease, TTL 3 s).

The pair is joined by a v1 hub and a v2 hub of our own; the drill joins with its own canary nodes,
resigns the active through ``POST /admin/resign``, and must report a switchover without loss.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.bridgeproc import ROOT, BridgeProc
from tests.helpers.net import free_ports
from v1.node import V1Node, V1NodeConfig
from v2.node import V2Node, V2NodeConfig


async def _drain(ch: Any) -> None:
    async for _ in ch:
        pass


async def _pair(nursery: trio.Nursery, tmp_path: Path) -> list[BridgeProc]:
    v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1), CollectorRegistry())
    await nursery.start(v1.run)
    tcp, ws = free_ports(2)
    v2 = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, True, ws), CollectorRegistry())
    await nursery.start(v2.run)
    nursery.start_soon(_drain, v1.inbound())
    nursery.start_soon(_drain, v2.messages())
    lease = f"sqlite:{tmp_path / 'failover.sqlite3'}"
    bridges = [BridgeProc(n, tmp_path, [v1.enode], [v2.listen_addrs[0]], failover=lease) for n in ("A", "B")]
    for b in bridges:
        await trio.to_thread.run_sync(b.start)
    for b in bridges:
        await trio.to_thread.run_sync(b.wait_status, lambda s: s["peers"]["v1"] and s["peers"]["v2"])
    return bridges


async def test_drill_switches_over_without_losing_canaries(nursery: trio.Nursery, tmp_path: Path) -> None:
    bridges = await _pair(nursery, tmp_path)
    try:
        first = await trio.to_thread.run_sync(
            lambda: [b.wait_status(lambda s: s["leader"] is not None) for b in bridges])
        old_active = next(s["peer_id"] for s in first if s["role"] == "active")
        r = await trio.run_process(
            [sys.executable, "-m", "bridge.app.cli", "drill", *(b.url for b in bridges), "--canaries", "10",
             "--timeout", "60", "--json"], capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        out = r.stdout.decode()
        assert r.returncode == 0, out + r.stderr.decode()[-3000:]
        rep = json.loads(out)
        assert rep["ok"] and rep["problems"] == []
        assert rep["old_active"] == old_active and rep["new_active"] not in (None, old_active)
        assert rep["new_token"] > rep["old_token"]
        assert rep["active_at_end"] == [rep["new_active"]]
        assert rep["takeover_s"] is not None  # a takeover was observed; how fast is bench/'s to measure
        for d in ("v1_to_v2", "v2_to_v1"):
            assert rep[d]["sent"] == 30 and rep[d]["delivered"] == 30
            assert rep[d]["lost"] == 0 and rep[d]["duplicates"] == 0
        print(f"drill: takeover {rep['takeover_s']} s, tokens {rep['old_token']} -> {rep['new_token']}")
    finally:
        for b in bridges:
            await trio.to_thread.run_sync(b.kill, 15)


async def test_drill_refuses_without_a_standby(nursery: trio.Nursery, tmp_path: Path) -> None:
    bridges = await _pair(nursery, tmp_path)
    try:
        st = await trio.to_thread.run_sync(lambda: [b.wait_status(lambda s: s["leader"] is not None)
                                                    for b in bridges])
        standby = next(b for b, s in zip(bridges, st, strict=True) if s["role"] == "standby")
        active = next(b for b in bridges if b is not standby)

        async def status_cli() -> tuple[int, str]:
            r = await trio.run_process([sys.executable, "-m", "bridge.app.cli", "status", active.url, standby.url],
                                       capture_stdout=True, check=False, cwd=ROOT,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)})
            return r.returncode, r.stdout.decode()

        code, out = await status_cli()  # `waku-bridge status`: one active, one standby: exit 0
        assert code == 0 and "loop_lag_s" in out, out
        assert {ln.split()[2] for ln in out.splitlines()[1:]} == {"active", "standby"}
        await trio.to_thread.run_sync(standby.kill, 15)
        code, out = await status_cli()
        assert code == 1 and "UNREACHABLE" in out
        r = await trio.run_process(
            [sys.executable, "-m", "bridge.app.cli", "drill", active.url, standby.url, "--json"],
            capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 1
        assert "unreachable" in json.loads(r.stdout)["problems"][0]
        assert (await trio.to_thread.run_sync(active.wait_status, lambda s: True))["role"] == "active"
        # the admin endpoint itself: a standby cannot resign, a GET is not an action
        resp = await trio.to_thread.run_sync(lambda: httpx.get(active.url + "/admin/resign", timeout=5))
        assert resp.status_code == 404
    finally:
        for b in bridges:
            await trio.to_thread.run_sync(b.kill, 15)
