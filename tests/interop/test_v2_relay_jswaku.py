"""Relay interop with js-waku: @waku/relay 0.0.14 + @waku/sdk 0.0.27 over TCP + yamux + noise.

Exercises every gossipsub fix in v2/relay/gossipsub_compat.py: js-waku speaks only the Waku relay
codec, rejects signed messages and messages with from/seqno, and uses sha256(data) as message id.
"""

from __future__ import annotations

import os
import time

import trio

from tests.helpers.jsproc import JsPeer
from tests.helpers.v2relay import TOPIC, Node, wait_mesh
from v2.core.message import WakuMessage

CONTENT = "/test/1/relay/proto"
N = 100


async def test_js_waku_relay_exchanges_messages_both_ways(nursery: trio.Nursery) -> None:
    ours = await Node().start(nursery)
    js = await JsPeer.start(nursery, "waku-relay", "relay.mjs", env={"NODE_ENV": "test"},
                            node_args=["--import", "./polyfill.mjs"])
    try:
        await js.request("start", pubsubTopic=TOPIC, contentTopic=CONTENT)
        tcp_addr = next(a for a in ours.host.listen_addrs if "/ws" not in a)
        await js.request("dial", addr=tcp_addr, timeout=40)
        await wait_mesh([ours])
        with trio.fail_after(20):
            while not (await js.request("meshPeers"))["peers"]:
                await trio.sleep(0.2)
        # js -> ours
        js_payloads = [os.urandom(16).hex() for _ in range(N)]
        for p in js_payloads:
            reply = await js.request("send", contentTopic=CONTENT, payload=p)
            assert reply["recipients"] >= 1, reply
        with trio.fail_after(30):
            while len(ours.got) < N:
                await trio.sleep(0.05)
        assert sorted(p.hex() for p in ours.payloads) == sorted(js_payloads)
        # ours -> js
        our_payloads = [os.urandom(16) for _ in range(N)]
        for p in our_payloads:
            await ours.relay.publish(TOPIC, WakuMessage(p, CONTENT, version=0, timestamp=time.time_ns()))
        got = await js.wait_event("message", count=N, timeout=30)
        assert sorted(e["payload"] for e in got) == sorted(p.hex() for p in our_payloads)
        assert all(e["contentTopic"] == CONTENT for e in got)
        await trio.sleep(1)
        assert len(ours.got) == N and len(js.events) >= N  # nothing lost, nothing doubled
        assert len([e for e in js.events if e.get("event") == "message"]) == N
    finally:
        await js.aclose()
