"""A stock js-waku light node (@waku/sdk 0.0.36) over secure WebSocket only, as a browser page
served over https must connect: lightpush, store and filter through our node's ``/wss`` listener.

Our service node S runs with nwaku's ``--websocket-secure-support`` and a certificate for
127.0.0.1 made here from a throwaway CA (tests/helpers/tls.py, in the tmp dir).  The light node
trusts that CA through ``NODE_EXTRA_CA_CERTS`` (verification stays on: without it the dial fails,
second test) and keeps the SDK's default address filter outside tests, @libp2p/websockets
``filters.wss``, so it cannot fall back to anything but wss.  R is S's relay peer over TCP (a
lightpush needs >= 1 relay peer on the shard, waku-v2.md §10.2).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio

from tests.helpers.jsproc import JsPeer, JsPeerError
from tests.helpers.tls import TlsFiles, make_tls_files
from tests.helpers.v2node import TOPIC, make_node, metric, start
from tests.helpers.wait import wait_until
from v2.core.message import WakuMessage, message_hash
from v2.node import V2Node

CONTENT = "/interop/1/wss/proto"
N = 12


def _wss_node(tmp: Path, tls: TlsFiles) -> V2Node:
    return make_node(tmp, lightpush=True, websocket_secure_support=True,
                     websocket_secure_cert_path=str(tls.server_cert), websocket_secure_key_path=str(tls.server_key))


async def _light_node(nursery: trio.Nursery, ca: Path | None) -> JsPeer:
    # NODE_ENV=test would make the SDK accept plain ws addresses too (@waku/sdk create/libp2p.js).
    env = {"NODE_ENV": "production", "NODE_EXTRA_CA_CERTS": str(ca) if ca is not None else ""}
    js = await JsPeer.start(nursery, "waku-sdk", "lightnode.mjs", node_args=["--import", "./polyfill.mjs"], env=env)
    await js.request("start", clusterId=0, numShardsInCluster=1, wssOnly=True)
    return js


async def test_js_waku_light_node_over_wss_lightpush_store_filter(nursery: trio.Nursery, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls", "wss")
    s = _wss_node(tmp_path, tls)
    r = make_node()
    s_col = await start(nursery, s)
    r_col = await start(nursery, r)
    assert s.ws_addr is not None and "/wss/p2p/" in s.ws_addr
    assert [a for a in s.listen_addrs if "/ws" in a] == [s.ws_addr]  # no plain ws listener at all
    await r.host.connect(s.listen_addrs[0])
    await wait_until(lambda: s.relay.mesh_peers(TOPIC), what="R in S's mesh")
    js = await _light_node(nursery, tls.ca)
    try:
        with pytest.raises(JsPeerError, match="NoValidAddressesError"):  # the wss filter: S's TCP address is out
            await js.request("dial", addr=s.listen_addrs[0], protocols=["store"], timeoutMs=2000, timeout=30)
        dialed = await js.request("dial", addr=s.ws_addr, timeout=40)
        ours = next(p for p in dialed["peers"] if p["id"] == s.peer_id)
        assert {"/vac/waku/lightpush/3.0.0", "/vac/waku/store-query/3.0.0",
                "/vac/waku/filter-subscribe/2.0.0-beta1", "/vac/waku/metadata/1.0.0"} <= set(ours["protocols"])

        # lightpush in over wss: S relays to R and hands each message to its own consumers
        payloads = [os.urandom(20).hex() for _ in range(N)]
        for p in payloads:
            reply = await js.request("lightpush", contentTopic=CONTENT, payload=p)
            assert reply["successes"] == [s.peer_id] and not reply["failures"], reply
        await wait_until(lambda: len(r_col.got) >= N and len(s_col.got) >= N, what="the lightpushed messages")
        assert sorted(m.message.payload.hex() for m in r_col.got) == sorted(payloads)
        assert all(m.origin == "lightpush" for m in s_col.got)

        # store out over wss, paged
        assert s.archive is not None
        await wait_until(lambda: s.archive is not None and s.archive.message_count >= N, what="the archive")
        got = await js.request("store", contentTopic=CONTENT, pageSize=5, timeout=40)
        assert got["count"] == N and got["pages"] >= 3, got
        assert sorted(got["hashes"]) == sorted(m.hash.hex() for m in s_col.got)

        # filter push over wss: a message published on R reaches the light node through S
        await js.request("subscribe", contentTopic=CONTENT)
        await wait_until(lambda: metric(s, "waku_filter_subscriptions") >= 1, what="the filter subscription")
        later = WakuMessage(b"later " + os.urandom(8), CONTENT, version=0, timestamp=time.time_ns())
        await r.publish(TOPIC, later)
        ev = (await js.wait_event("filter", timeout=20))[0]
        assert ev["payload"] == later.payload.hex() and ev["hash"] == message_hash(TOPIC, later).hex()
        assert metric(s, "waku_node_tls_handshake_failures_total", reason="protocol") == 0
    finally:
        await js.aclose()


async def test_js_waku_without_the_ca_cannot_dial_wss(nursery: trio.Nursery, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls", "wss")
    s = _wss_node(tmp_path, tls)
    await start(nursery, s)
    assert s.ws_addr is not None
    js = await _light_node(nursery, None)
    try:
        with pytest.raises(JsPeerError, match="Could not connect"):
            await js.request("dial", addr=s.ws_addr, protocols=["store"], timeoutMs=4000, timeout=30)
        assert not s.peers()
        # Node hangs up inside the TLS 1.3 handshake (no alert): what an operator sees when
        # clients reject the certificate (expired, wrong name, untrusted CA)
        await wait_until(lambda: metric(s, "waku_node_tls_handshake_failures_total", reason="eof") >= 1,
                         what="the refused handshake counted")
    finally:
        await js.aclose()
