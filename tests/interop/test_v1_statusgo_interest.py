"""Shedding load at the source: a bridge with ``bridge.allow_topics`` asks its v1 peers for those
topics only, and status-go (v1.1.0, tests/interop/go/wakuv1) honours it.

The bridge process advertises topic interest (key 5) and the matching bloom (key 1) in its Status
(v1.waku.peer.advertised_interest).  status-go keeps a peer's topic interest from its Status
(waku/v1/peer.go setOptions) and broadcasts to it only the envelopes whose topic is in it
(peer.go broadcast -> topicOrBloomMatch -> topicInterestMatch).  A plain node of ours with the full
bloom, on the same status-go, is the control: it receives every topic.  Every wait returns as soon
as its condition holds; nothing asserts on timing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.jsproc import GoPeer
from v1.node import V1Node, V1NodeConfig
from v1.waku.bloom import bloom_or

pytestmark = pytest.mark.interop

WANTED = bytes.fromhex("1a2b3c4d")
OTHER = bytes.fromhex("00010200")


def _sample(text: str, name: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def test_bridge_allow_topics_become_statusgo_topic_interest(nursery: trio.Nursery, tmp_path: Path) -> None:
    go = await GoPeer.start_go(nursery, "wakuv1", ["-port", "0", "-pow", "0.002"])
    ready: dict[str, Any] = (await go.wait_event("ready", timeout=60))[0]
    control = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=(ready["enode"],),
                                  forward_interval=0.1), CollectorRegistry())
    await nursery.start(control.run)
    bridge = BridgeProc("A", tmp_path, [ready["enode"]], [], failover=None,
                        extra=["--bridge-allow-topic", WANTED.hex()])
    try:
        await trio.to_thread.run_sync(bridge.start)
        await trio.to_thread.run_sync(bridge.wait_status, lambda s: s["peers"]["v1"] >= 1, 60.0)
        await go.wait_event("peer_add", count=2, timeout=60)

        # The bridge's Status as status-go decoded it: topic interest [WANTED] and its bloom.
        def from_bridge(e: dict[str, Any]) -> bool:
            return (e.get("event") == "status" and e["dir"] == "in" and e["code"] == 0
                    and 5 in e["keys"])

        with trio.fail_after(30):
            while not [e for e in go.events if from_bridge(e)]:
                await trio.sleep(0.05)
        st = next(e for e in go.events if from_bridge(e))
        assert st["options"]["topic_interest"] == [WANTED.hex()]
        assert 1 in st["keys"] and st["options"]["bloom"] == bloom_or([WANTED]).hex()
        bridge_peer = st["peer"]

        # Five envelopes of a topic the bridge would drop, then one it bridges.
        for i in range(5):
            await go.request("post", topic=OTHER.hex(), data=(b"other %d " % i + os.urandom(8)).hex(), ttl=30,
                             pow=0.003)
        await go.request("post", topic=WANTED.hex(), data=(b"wanted " + os.urandom(8)).hex(), ttl=30,
                         pow=0.003)

        def received() -> float:
            return _sample(bridge.metrics(), "envelopes_received_total")

        with trio.fail_after(60):  # the control gets all six (status-go did broadcast them) ...
            while len(control.pool) < 6 or await trio.to_thread.run_sync(received) < 1:
                await trio.sleep(0.1)
        # ... the bridge only the wanted one: status-go wrote it no envelope of the other topic.
        # (status-go sends a peer's due envelopes in one bundle per tick, on one connection, in
        # order: the other-topic envelopes, posted first, would have come before the wanted one.)
        text = await trio.to_thread.run_sync(bridge.metrics)
        assert _sample(text, "envelopes_received_total") == 1
        assert _sample(text, "envelopes_valid_total") == 1
        assert _sample(text, "waku_bridge_dropped_total", type="denied") == 0
        sent_to_bridge = [e for e in go.events if e.get("event") == "messages" and e["dir"] == "out"
                          and e["peer"] == bridge_peer]
        assert sum(e["count"] for e in sent_to_bridge) == 1
        assert not [e for e in go.events if e.get("event") == "peer_drop"]
    finally:
        await trio.to_thread.run_sync(bridge.kill)
        await go.aclose()
