"""``query_history``, the store-client lookup a bridge takeover runs: on real nodes over loopback, a
store peer S, our node B (store mounted) and a node C without a store of its own."""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.net import free_ports
from tests.v2.store.conftest import DbFactory
from v2.core.message import WakuMessage
from v2.core.topics import PubsubTopic
from v2.node import V2Node, V2NodeConfig
from v2.store.client import HistoryRequest, HistoryResult, query_history

NS = 10**9
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"


def node(tmp: Path | None = None, db_url: str | None = None) -> V2Node:
    tcp, ws = free_ports(2)
    cfg = V2NodeConfig(secrets.token_bytes(32), "127.0.0.1", tcp, True, ws)
    if tmp is not None:
        cfg = dataclasses.replace(cfg, store=True, data_dir=tmp, store_message_db_url=db_url or f"sqlite://s-{tcp}.sqlite3")
    return V2Node(cfg, CollectorRegistry())


async def ask(n: V2Node, req: HistoryRequest) -> HistoryResult:
    """What a bridge on ``n`` asks at takeover: its own archive and its store peers."""
    return await query_history(n.host, n.store_peers(), req, trio.current_time() + 5, local=n.store,
                               local_since=n.started_at)


async def test_history_asks_own_archive_and_store_peers(nursery: trio.Nursery, tmp_path: Path,
                                                        store_db: DbFactory) -> None:
    topic = str(PubsubTopic(0, 0))
    s_node, b_node, c_node = node(tmp_path, store_db("s")), node(tmp_path, store_db("b")), node()
    for n in (s_node, b_node, c_node):
        await nursery.start(n.run)
    await b_node.host.connect(s_node.listen_addrs[0])
    await c_node.host.connect(s_node.listen_addrs[0])
    with trio.fail_after(20):
        while (b_node.store_peers() != [s_node.peer_id] or c_node.store_peers() != [s_node.peer_id]
               or not b_node.relay.mesh_peers(topic)):
            await trio.sleep(0.05)
    assert b_node.started_at is not None  # our archive counts for windows from its start second on
    await trio.sleep(max(0.0, int(b_node.started_at) + 1 - time.time()))
    m1 = WakuMessage(b"archived by the store peer", CONTENT, version=1, timestamp=time.time_ns())
    m2 = WakuMessage(b"archived by us", CONTENT, version=1, timestamp=time.time_ns())
    await s_node.publish(topic, m1)
    await b_node.publish(topic, m2)
    lo, hi = min(m1.timestamp or 0, m2.timestamp or 0), max(m1.timestamp or 0, m2.timestamp or 0)
    req = HistoryRequest(topic, (CONTENT,), lo // NS * NS, (hi // NS + 1) * NS)
    with trio.fail_after(10):
        while s_node.archive.message_count < 1 or b_node.archive.message_count < 1:
            await trio.sleep(0.05)

    res = await ask(b_node, req)
    assert res.sources == 2 and res.failures == ()  # our archive (up over the window) and S
    assert {m.payload for m in res.messages} >= {m1.payload, m2.payload}
    res = await ask(c_node, req)  # no store of its own
    assert res.sources == 1 and m1.payload in {m.payload for m in res.messages}
    early = HistoryRequest(topic, (CONTENT,), 0, NS)  # before B started: only S is asked
    assert (await ask(b_node, early)).sources == 1
    # a source that cannot answer (C serves no store) is a failure, never an exception
    res = await query_history(b_node.host, [c_node.peer_id], req, trio.current_time() + 5)
    assert res.sources == 1 and len(res.failures) == 1 and res.messages == ()
