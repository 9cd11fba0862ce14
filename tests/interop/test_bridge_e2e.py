"""End to end through a bridge process, with third-party peers on both sides.

@ethereumjs/devp2p (waku/1 harness) <-> `waku-bridge --peer-id A` <-> js-waku relay node, and
the same with a stock js-waku *light node* (@waku/sdk 0.0.36 over ws) on the v2 side, which
lightpushes into the bridge's v2 node and receives v1 traffic through a filter subscription.
Messages go both ways and arrive with the right topic, payload, version and timestamp; the
ethereumjs peer receives (accepts) the v2->v1 envelope.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import rlp
import trio

from bridge.payload import wrap_unencrypted
from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.envelopes import mined_envelope
from tests.helpers.jsproc import JsPeer
from tests.helpers.net import free_ports
from v1.waku.envelope import Envelope
from v1.waku.messages import encode_messages
from v1.waku.pow import SizeRule, pow_value

JS_V1_KEY = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291"
TOPIC_V1 = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"


def start_bridge(tmp: Path, js_enode: str, js_addr: str, extra: tuple[str, ...] = ()) -> BridgeProc:
    bridge = BridgeProc("A", tmp, [js_enode], [js_addr], failover=None, extra=list(extra))
    bridge.start()
    return bridge


async def test_bridge_between_ethereumjs_and_js_waku(nursery: trio.Nursery, tmp_path: Path) -> None:
    (v1_port,) = free_ports(1)
    jsv1 = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    jsv2 = await JsPeer.start(nursery, "waku-relay", "relay.mjs", env={"NODE_ENV": "test"},
                              node_args=["--import", "./polyfill.mjs"])
    bridge = None
    try:
        enode = (await jsv1.request("start", privateKey=JS_V1_KEY, port=v1_port, pow=0.002))["enode"]
        v2 = await jsv2.request("start", pubsubTopic=PUBSUB, contentTopic=CONTENT)
        bridge = await trio.to_thread.run_sync(start_bridge, tmp_path, enode, v2["addrs"][0])
        peer = (await jsv1.wait_event("peer_added", timeout=20))[0]["peer"]
        with trio.fail_after(30):
            while not (await jsv2.request("meshPeers"))["peers"]:
                await trio.sleep(0.2)

        # v1 -> v2
        now = int(time.time())
        data = b"rfc26 blob from v1 " + os.urandom(8)
        env = mined_envelope(data, topic=TOPIC_V1, now=now)
        await jsv1.request("send", peer=peer, code=1, hex=encode_messages([env]).hex())
        got = (await jsv2.wait_event("raw", timeout=20))[0]
        assert got["contentTopic"] == CONTENT and bytes.fromhex(got["payload"]) == data
        assert got["version"] == 1 and int(got["timestamp"]) == now * 10**9  # (expiry - ttl) s, in ns

        # v2 -> v1
        payload = os.urandom(12)
        sent_ms = time.time()
        await jsv2.request("send", contentTopic=CONTENT, payload=payload.hex())
        env_evt = None
        with trio.fail_after(20):
            while env_evt is None:
                for e in await jsv1.wait_event("envelope", count=1):
                    if bytes.fromhex(e["hex"]) != env.encode():
                        env_evt = e
                if env_evt is None:
                    await trio.sleep(0.1)
        out = Envelope.decode(bytes.fromhex(env_evt["hex"]))
        assert out.topic == TOPIC_V1
        assert out.data == wrap_unencrypted(payload)  # js-waku sends version 0: wrapped as RFC 26
        assert abs(out.sent - sent_ms) <= 2 and out.ttl == 10
        assert pow_value(out, SizeRule.STRICT) >= 0.002 and env_evt["hash"] == out.hash.hex()
        assert rlp.decode(bytes.fromhex(env_evt["hex"]))[2] == TOPIC_V1

        status = httpx.get(bridge.url + "/status", timeout=5).json()
        assert status["transfers"] == {"v1_to_v2": 1, "v2_to_v1": 1}
        assert status["peers"] == {"v1": 1, "v2": 1} and status["role"] == "active"
        metrics = httpx.get(bridge.url + "/metrics", timeout=5).text
        assert 'waku_bridge_transfers_total{type="v1_to_v2"} 1.0' in metrics
    finally:
        if bridge is not None:
            await trio.to_thread.run_sync(bridge.kill, signal.SIGTERM)
        await jsv1.aclose()
        await jsv2.aclose()


async def test_bridge_between_ethereumjs_and_js_waku_light_node(nursery: trio.Nursery, tmp_path: Path) -> None:
    from tests.helpers.v2node import make_node, start

    (v1_port,) = free_ports(1)
    jsv1 = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    light = await JsPeer.start(nursery, "waku-sdk", "lightnode.mjs", node_args=["--import", "./polyfill.mjs"])
    relay_peer = make_node()  # the bridge's relay peer: a lightpush needs one (waku-v2.md §10.2)
    relayed = await start(nursery, relay_peer)
    bridge = None
    try:
        enode = (await jsv1.request("start", privateKey=JS_V1_KEY, port=v1_port, pow=0.002))["enode"]
        bridge = await trio.to_thread.run_sync(
            start_bridge, tmp_path, enode, relay_peer.listen_addrs[0], ("--lightpush", "--filter", "--store"))
        peer = (await jsv1.wait_event("peer_added", timeout=20))[0]["peer"]
        with trio.fail_after(30):
            while not relay_peer.relay.mesh_peers(PUBSUB):
                await trio.sleep(0.2)
        ws_addr = next(a for a in bridge.info["v2"] if "/ws/" in a)  # type: ignore[attr-defined]
        await light.request("start", clusterId=0, numShardsInCluster=1)
        await light.request("dial", addr=ws_addr, timeout=40)
        await light.request("subscribe", contentTopic=CONTENT)

        # light node -> lightpush -> bridge -> v1
        payload = os.urandom(12)
        sent = time.time()
        reply = await light.request("lightpush", contentTopic=CONTENT, payload=payload.hex())
        assert reply["successes"] and not reply["failures"], reply
        env_evt = (await jsv1.wait_event("envelope", timeout=20))[0]
        out = Envelope.decode(bytes.fromhex(env_evt["hex"]))
        assert out.topic == TOPIC_V1
        assert out.data == wrap_unencrypted(payload)  # js-waku sends version 0: wrapped as RFC 26
        assert abs(out.sent - sent) <= 2 and pow_value(out, SizeRule.STRICT) >= 0.002
        with trio.fail_after(10):  # the relay peer saw the lightpushed message too
            while not relayed.got:
                await trio.sleep(0.05)
        assert relayed.got[0].message.payload == payload

        # v1 -> bridge -> filter push -> light node
        now = int(time.time())
        data = b"rfc26 blob from v1 " + os.urandom(8)
        env = mined_envelope(data, topic=TOPIC_V1, now=now)
        await jsv1.request("send", peer=peer, code=1, hex=encode_messages([env]).hex())
        try:
            with trio.fail_after(20):
                while not (got := [e for e in light.events if e.get("event") == "filter" and e.get("version") == 1]):
                    await trio.sleep(0.05)
        except trio.TooSlowError:
            scrape = httpx.get(bridge.url + "/metrics", timeout=5).text
            lines = [m for m in scrape.splitlines() if m.startswith(("waku_filter", "waku_bridge_transfers",
                                                                        "waku_bridge_dropped"))]
            raise AssertionError("no filter push reached the light node\n" + "\n".join(lines)
                                 + "\nlight node stderr:\n" + light.stderr) from None
        ev = got[0]
        assert ev["contentTopic"] == CONTENT and bytes.fromhex(ev["payload"]) == data
        assert ev["pubsubTopic"] == PUBSUB and int(ev["timestamp"]) == now * 10**9  # (expiry - ttl) s, in ns

        status = httpx.get(bridge.url + "/status", timeout=5).json()
        assert status["transfers"] == {"v1_to_v2": 1, "v2_to_v1": 1}
    finally:
        if bridge is not None:
            await trio.to_thread.run_sync(bridge.kill, signal.SIGTERM)
        await jsv1.aclose()
        await light.aclose()
