"""A stock js-waku light node (@waku/sdk 0.0.36, ws + noise + mplex, Node 20 + polyfill) against
our full node: lightpush v3 in, store v3 out over several pages, filter pushes.

Our service node S mounts relay, store, filter and lightpush; a second node R is S's relay peer
(a lightpush needs >= 1 relay peer on the shard, waku-v2.md §10.2).  The light node dials S's ws
address and relies on identify and metadata exactly as it would against nwaku.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio

from tests.helpers.jsproc import JsPeer, JsPeerError
from tests.helpers.v2node import TOPIC, make_node, metric, start
from v2.core.message import WakuMessage, message_hash

CONTENT = "/interop/1/lightnode/proto"
N = 25


async def test_js_waku_light_node_lightpush_store_filter(nursery: trio.Nursery, tmp_path: Path) -> None:
    s = make_node(tmp_path, lightpush=True)
    r = make_node()
    s_col = await start(nursery, s)
    r_col = await start(nursery, r)
    await r.host.connect(s.listen_addrs[0])
    with trio.fail_after(20):
        while not s.relay.mesh_peers(TOPIC):
            await trio.sleep(0.1)
    js = await JsPeer.start(nursery, "waku-sdk", "lightnode.mjs", node_args=["--import", "./polyfill.mjs"])
    try:
        await js.request("start", clusterId=0, numShardsInCluster=1)
        assert s.ws_addr is not None
        dialed = await js.request("dial", addr=s.ws_addr, timeout=40)
        ours = next(p for p in dialed["peers"] if p["id"] == s.peer_id)
        assert {"/vac/waku/lightpush/3.0.0", "/vac/waku/store-query/3.0.0",
                "/vac/waku/filter-subscribe/2.0.0-beta1", "/vac/waku/metadata/1.0.0"} <= set(ours["protocols"])
        with trio.fail_after(10):  # we queried its metadata and kept it (js answers shards: [])
            while len(s.peer_metadata) < 2:
                await trio.sleep(0.05)

        # (a) lightpush: S relays to R and also hands the message to its own consumers
        payloads = [os.urandom(20).hex() for _ in range(N)]
        for p in payloads:
            reply = await js.request("lightpush", contentTopic=CONTENT, payload=p)
            assert reply["successes"] == [s.peer_id] and not reply["failures"], reply
            assert reply["pubsubTopic"] == TOPIC
        with trio.fail_after(20):
            while len(r_col.got) < N or len(s_col.got) < N:
                await trio.sleep(0.05)
        assert sorted(m.message.payload.hex() for m in r_col.got) == sorted(payloads)
        assert all(m.origin == "lightpush" for m in s_col.got)
        assert sorted(m.message.payload.hex() for m in s_col.got) == sorted(payloads)

        # (b) store: 25 messages in pages of 10, the SDK pages until an empty page
        assert s.archive is not None
        with trio.fail_after(10):
            while s.archive.message_count < N:
                await trio.sleep(0.05)
        got = await js.request("store", contentTopic=CONTENT, pageSize=10, timeout=40)
        assert got["count"] == N and got["pages"] >= 3, got
        assert sorted(got["hashes"]) == sorted(m.hash.hex() for m in s_col.got)

        # (c) filter: a later message published on R reaches the light node through S
        await js.request("subscribe", contentTopic=CONTENT)
        with trio.fail_after(10):
            while metric(s, "waku_filter_subscriptions") < 1:
                await trio.sleep(0.05)
        later = WakuMessage(b"later " + os.urandom(8), CONTENT, version=0, timestamp=time.time_ns())
        await r.publish(TOPIC, later)
        ev = (await js.wait_event("filter", timeout=20))[0]
        assert ev["payload"] == later.payload.hex() and ev["contentTopic"] == CONTENT
        assert ev["pubsubTopic"] == TOPIC and ev["hash"] == message_hash(TOPIC, later).hex()
        assert int(ev["timestamp"]) == later.timestamp
    finally:
        await js.aclose()


async def test_js_waku_light_node_on_another_cluster_is_disconnected(nursery: trio.Nursery) -> None:
    s = make_node(store=True, filter=True, store_message_db_url="sqlite://:memory:")
    await start(nursery, s)
    js = await JsPeer.start(nursery, "waku-sdk", "lightnode.mjs", node_args=["--import", "./polyfill.mjs"])
    try:
        js_id = (await js.request("start", clusterId=1, numShardsInCluster=8))["peerId"]  # js-waku's TWN default
        assert s.ws_addr is not None
        try:  # js-waku itself does not check clusters on dial; identify may complete before we hang up
            await js.request("dial", addr=s.ws_addr, protocols=["store"], timeoutMs=4000, timeout=30)
        except JsPeerError:
            pass
        with trio.fail_after(10):
            while metric(s, "waku_metadata_rejected_peers_total", reason="cluster_mismatch") < 1:
                await trio.sleep(0.05)
        assert js_id not in s.peer_metadata  # never kept (js-waku may redial; each time it is dropped again)
    finally:
        await js.aclose()
