"""Bad input on both sides of a real bridge (issue "Must show 4").

The bridge is the real composition (:class:`bridge.app.bridgeservice.BridgeService`: its own v1
and v2 nodes, pipeline, dedup file, aggregates) in this trio loop; around it, real nodes on
loopback: v1 peers (one with a clock 100 s slow, one 60 s fast, which is how expired and
future envelopes reach a bridge in the field), a raw RLPx client sending malformed envelopes and
a garbage packet, and two v2 peers (one sends WakuMessages the bridge must refuse, one publishes
raw non-WakuMessage bytes with its own validation off).  tests/bridge/test_pipeline.py covers
the same drop reasons through in-memory ports; here each arrives over the wire.  Every bad
input is counted under its reason, nothing is bridged for it, and afterwards a good message still
crosses in each direction.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import rlp
import trio
from prometheus_client import CollectorRegistry

from bridge.aggregates import read_hourly
from bridge.app.bridgeservice import BridgeService
from bridge.app.config import load_config
from tests.helpers.envelopes import mined_envelope
from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v1.node import WAKU, V1Node, V1NodeConfig
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams
from v1.rlpx.transport import rlpx_connect
from v1.waku.envelope import Envelope
from v1.waku.messages import WakuCode
from v1.waku.status import StatusOptions, encode_status
from v2.core.message import WakuMessage
from v2.node import V2Node, V2NodeConfig

TOPIC = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"
ROOT = Path(__file__).resolve().parents[2]


def v1_node(*, offset: float = 0.0, static: tuple[str, ...] = ()) -> V1Node:
    return V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1, static_nodes=static),
                  CollectorRegistry(), clock=lambda: time.time() + offset)


async def test_bad_input_on_both_sides_is_counted_and_the_bridge_keeps_bridging(nursery: trio.Nursery,
                                                                                 tmp_path: Path) -> None:
    # --- the v2 network: one peer the bridge dials, one misbehaving peer dialling it ---
    tcp, ws, tcp_bad, ws_bad, b_v2, b_ws = free_ports(6)
    v2peer = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, True, ws), CollectorRegistry())
    await nursery.start(v2peer.run)

    # --- the bridge ---
    cfg = load_config(None, {"peer_id": "A", "data_dir": str(tmp_path), "listen_address": "127.0.0.1",
                             "v1__port": "0", "v2__tcp_port": str(b_v2), "v2__websocket_port": str(b_ws),
                             "metrics__enabled": "false", "v2__staticnodes": [v2peer.listen_addrs[0]],
                             "v2__cluster_id": "0", "v1__pow": "0.002"}, env={})
    bridge = BridgeService(cfg)
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def run_bridge(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await bridge.run(task_status=task_status)
        stopped.set()

    await nursery.start(run_bridge)
    reg = bridge.registry

    def metric(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, labels) or 0.0

    def dropped(reason: str) -> float:
        return metric("waku_bridge_dropped_total", type=reason)

    v2bad = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp_bad, True, ws_bad,
                                staticnodes=(bridge.v2.listen_addrs[0],)), CollectorRegistry())
    await nursery.start(v2bad.run)

    # --- the v1 network: a good peer (also the receiver), a slow clock, a fast clock ---
    v1good = v1_node(static=(bridge.v1.enode,))
    v1slow = v1_node(offset=-100, static=(bridge.v1.enode,))
    v1fast = v1_node(offset=60, static=(bridge.v1.enode,))
    for n in (v1good, v1slow, v1fast):
        await nursery.start(n.run)
    v1_got: list[Envelope] = []
    v2_got: list[WakuMessage] = []

    async def collect_v1() -> None:
        async for rec in v1good.inbound():
            v1_got.append(rec.envelope)

    async def collect_v2() -> None:
        async for m in v2peer.messages():
            v2_got.append(m.message)

    nursery.start_soon(collect_v1)
    nursery.start_soon(collect_v2)
    await wait_until(lambda: len(bridge.v1.peers()) == 3 and len(bridge.v2.peers()) == 2)
    await wait_until(lambda: len(v2peer.relay.mesh_peers(PUBSUB)) >= 1 and len(v2bad.relay.mesh_peers(PUBSUB)) >= 1
                   and len(bridge.v2.relay.mesh_peers(PUBSUB)) >= 2)

    # --- v1 side ---
    now = time.time()
    late = mined_envelope(b"expired at the bridge", ttl=30, topic=TOPIC, now=now - 100)
    assert (await v1slow.post(late)).accepted  # fine by its clock
    assert (await v1fast.post(mined_envelope(b"from the future", ttl=30, topic=TOPIC, now=now + 60))).accepted
    big = mined_envelope(os.urandom(200_000), ttl=30, topic=TOPIC, now=now)
    assert (await v1good.post(big)).accepted  # ok for v1 (1 MiB), > v2's 150 KiB
    await wait_until(lambda: metric("envelopes_dropped_total", reason="expired") >= 1
                   and metric("envelopes_dropped_total", reason="future_timestamp") >= 1
                   and dropped("too_large") >= 1)
    # a raw RLPx peer: an envelope that is not one (per-item: counted, the peer stays), then a
    # Messages packet that is not RLP at all (a breach: counted, clean disconnect)
    hello = HelloParams("bad-input-test", (WAKU,))
    async with rlpx_connect(bridge.v1.enode, NodeKey.generate(), hello) as raw:
        await raw.send(WakuCode.STATUS, encode_status(StatusOptions(pow_requirement=0.0)))
        await raw.receive()
        good_item = rlp.decode(mined_envelope(b"x", ttl=30, topic=TOPIC, now=now).encode())
        await raw.send(WakuCode.MESSAGES, rlp.encode([[b"\x01", b"\x02"], [b"not", b"an", b"envelope", b"!", b"?"],
                                                      [b"\xff" * 9, *good_item[1:]]]))
        await wait_until(lambda: metric("envelopes_dropped_total", reason="malformed") >= 3)
        await raw.send(WakuCode.MESSAGES, b"\xff\x00 garbage")
        await wait_until(lambda: metric("waku_v1_peer_disconnects_total", reason="malformed_messages") >= 1)

    # --- v2 side: WakuMessages the bridge refuses ---
    ts = time.time_ns()
    for content_topic, reason in [("/app/1/chat/proto", "not_bridgeable"),
                                  ("/waku/2/0x1a2b3c4d/rfc26", "not_bridgeable"),
                                  ("/waku/1/0xzz2b3c4d/rfc26", "invalid_topic"),  # bad hex
                                  ("/waku/1/0x1a2b3c/rfc26", "invalid_topic"),  # 3 bytes
                                  ("/waku/1/0x1a2b3c4d55/rfc26", "invalid_topic")]:  # 5 bytes (nwaku truncated)
        before = dropped(reason)
        await v2peer.publish(PUBSUB, WakuMessage(os.urandom(16), content_topic, version=1, timestamp=ts))
        await wait_until(lambda r=reason, b=before: dropped(r) > b)  # type: ignore[misc]
    for msg, reason in [(WakuMessage(b"old", CONTENT, version=1, timestamp=ts - 100 * 10**9), "expired"),
                        (WakuMessage(b"ahead", CONTENT, version=1, timestamp=ts + 100 * 10**9), "future_timestamp"),
                        (WakuMessage(b"when?", CONTENT, version=1), "no_timestamp")]:
        await v2peer.publish(PUBSUB, msg)
        await wait_until(lambda r=reason: dropped(r) >= 1)  # type: ignore[misc]
    # raw bytes that are not a WakuMessage, from a peer that does not validate its own publishes
    assert v2bad.relay._pubsub is not None
    v2bad.relay._pubsub.remove_topic_validator(PUBSUB)
    await v2bad.relay._pubsub.publish(PUBSUB, b"\xff\xfe not protobuf")
    await v2bad.relay._pubsub.publish(PUBSUB, b"\x0a\x05ab")  # truncated field 1
    await v2bad.relay._pubsub.publish(PUBSUB, WakuMessage(b"", CONTENT, version=1, timestamp=ts).encode())
    await wait_until(lambda: metric("waku_relay_rejected_total", reason="malformed") >= 2
                   and metric("waku_relay_rejected_total", reason="empty_payload") >= 1)

    assert v1_got == [] and v2_got == []  # nothing bad crossed
    assert metric("waku_bridge_transfers_total", type="v1_to_v2") == 0
    assert metric("waku_bridge_transfers_total", type="v2_to_v1") == 0
    assert not stopped.is_set()

    # --- and the bridge still bridges, both ways ---
    good_v1 = mined_envelope(b"good from v1", ttl=30, topic=TOPIC, now=time.time())
    assert (await v1good.post(good_v1)).accepted
    await wait_until(lambda: any(m.payload == b"good from v1" for m in v2_got))
    good_v2 = WakuMessage(b"good from v2", CONTENT, version=1, timestamp=time.time_ns())
    await v2peer.publish(PUBSUB, good_v2)
    await wait_until(lambda: any(e.data == b"good from v2" for e in v1_got))
    assert metric("waku_bridge_transfers_total", type="v1_to_v2") == 1
    assert metric("waku_bridge_transfers_total", type="v2_to_v1") == 1
    st = bridge.status()
    assert st["peers"]["v1"] >= 3  # the skewed peers were not disconnected
    assert st["v2_share"]["total"] == 0.5 and st["aggregates"]["unflushed_rows"] == 2

    # shutdown flushes the hourly aggregates of this real run
    scope.cancel()
    await stopped.wait()
    rows = read_hourly(tmp_path / "A" / "aggregates.sqlite3")
    assert {(r.topic, r.origin, r.count) for r in rows} == {(CONTENT, "v1", 1), (CONTENT, "v2", 1)}
    # ... which the report command reads: the one topic carried traffic from both sides
    out = await trio.run_process([sys.executable, "-m", "bridge.app.cli", "report", "--data-dir", str(tmp_path),
                                  "--days", "1", "--format", "json"], capture_stdout=True, cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
    doc = json.loads(out.stdout)
    assert doc["total"]["v1_messages"] == doc["total"]["v2_messages"] == 1 and doc["mixed"] == [CONTENT]
