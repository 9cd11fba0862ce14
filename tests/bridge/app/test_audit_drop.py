"""The standby's audit catches exactly what the active failed to bridge (bridge/audit.py).

Two real bridge processes on one SQLite lease between a v1 node and a v2 node of our own.  The
active runs with the TEST-ONLY fault hook ``$WAKU_BRIDGE_TEST_ONLY_DROP_EVERY=10`` (it silently
skips every tenth publish per direction); 30 messages go each way.  The standby's audit must count
60 checks and 6 misses (3 per direction), and its recent misses must be the keys of exactly the
messages that never reached the other side.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from bridge.app.bridgeservice import TEST_ONLY_DROP_ENV
from bridge.translate import Unsealed, dedup_key, v2_to_v1
from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v1.node import V1Node, V1NodeConfig
from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce
from v2.core.message import WakuMessage
from v2.node import V2Node, V2NodeConfig

TOPIC = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"
N = 30


def envelope(data: bytes) -> Envelope:
    now = int(time.time())
    nonce = mine_smallest_nonce(now + 120, 120, TOPIC, data, 0.002)
    assert nonce is not None
    return Envelope(now + 120, 120, TOPIC, data, nonce)


def audit_of(b: BridgeProc) -> dict[str, object]:
    st = b.status(timeout=5) or {}
    audit: dict[str, object] = st.get("audit") or {}
    return audit


async def test_standby_audit_catches_every_tenth_message_the_active_drops(nursery: trio.Nursery,
                                                                         tmp_path: Path) -> None:
    v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1), CollectorRegistry())
    await nursery.start(v1.run)
    tcp, ws = free_ports(2)
    v2 = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, True, ws), CollectorRegistry())
    await nursery.start(v2.run)
    on_v1: set[bytes] = set()  # dedup keys of what reached each side (originals included)
    on_v2: set[bytes] = set()

    async def collect_v1() -> None:
        async for rec in v1.inbound():
            on_v1.add(dedup_key(rec.envelope.topic, rec.envelope.data))

    async def collect_v2() -> None:
        async for m in v2.messages():
            u = v2_to_v1(m.message, now=time.time(), ttl=10, max_skew=60)
            if isinstance(u, Unsealed):
                on_v2.add(u.key)

    nursery.start_soon(collect_v1)
    nursery.start_soon(collect_v2)
    lease = f"sqlite:{tmp_path / 'failover.sqlite3'}"
    a = BridgeProc("A", tmp_path / "A", [v1.enode], [v2.listen_addrs[0]], failover=lease,
                   env={TEST_ONLY_DROP_ENV: "10"})
    b = BridgeProc("B", tmp_path / "B", [v1.enode], [v2.listen_addrs[0]], failover=lease)
    try:
        await trio.to_thread.run_sync(a.start)
        await wait_until(lambda: (a.status() or {}).get("role") == "active", 60, "A active")
        await trio.to_thread.run_sync(b.start)
        for x in (a, b):
            await wait_until(lambda x=x: (x.status() or {}).get("peers") == {"v1": 1, "v2": 1}, 60,
                             f"{x.name} connected")
        await wait_until(lambda: len(v2.relay.mesh_peers(PUBSUB)) >= 2, 60, "A and B in the relay mesh")
        await wait_until(lambda: audit_of(b).get("auditing") is True, 60, "B auditing A")
        # past A's warm-up (bridge/standby.py "uncertain") and a mesh heartbeat
        await wait_until(lambda: ((a.status() or {}).get("uptime_s") or 0) > 6, 60, "A warm")
        await trio.sleep(1.5)
        envs = [envelope(b"v1 message %d " % i + os.urandom(4)) for i in range(N)]
        for e in envs:
            assert (await v1.post(e)).accepted
        msgs = [WakuMessage(b"v2 message %d " % i + os.urandom(4), CONTENT, version=1, timestamp=time.time_ns())
                for i in range(N)]
        for m in msgs:
            await v2.publish(PUBSUB, m)
        v1_keys = {dedup_key(e.topic, e.data) for e in envs}
        v2_keys = {dedup_key(TOPIC, m.payload) for m in msgs}

        def all_checked() -> bool:
            checked = audit_of(b).get("checked") or {}
            assert isinstance(checked, dict)
            return sum(checked.values()) >= 2 * N

        await wait_until(all_checked, 120, "the standby's audit to check all 60 messages")
        lost = (v1_keys - on_v2) | (v2_keys - on_v1)  # what never reached the other side
        audit = audit_of(b)
        assert audit["missed"] == {"v1_to_v2": N // 10, "v2_to_v1": N // 10}, audit
        assert sum(audit["checked"].values()) == 2 * N  # type: ignore[attr-defined]
        assert audit["ratio"] == round(1 - 2 * (N // 10) / (2 * N), 6)
        caught = {bytes.fromhex(m["key"]) for m in audit["recent_missed"]}  # type: ignore[attr-defined]
        assert len(lost) == 2 * (N // 10) and caught == lost
        metrics = await trio.to_thread.run_sync(b.metrics)
        assert 'waku_bridge_audit_missed_total{direction="v1_to_v2"} 3.0' in metrics
    finally:
        for x in (a, b):
            await trio.to_thread.run_sync(x.kill, signal.SIGTERM)
