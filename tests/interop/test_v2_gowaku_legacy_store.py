"""go-waku v0.10.0's legacy store client (waku/v2/protocol/legacy_store/waku_store_client.go, driven
through tests/interop/go/wakuv2 ``legacy_store_query``) pages our ``/vac/waku/store/2.0.0-beta4``
server, which reads the same archive as store v3: forward, backward, time range, content topics,
page sizes and resuming from a cursor it got from us.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.v2node import start
from tests.interop.test_v2_gowaku_relay import STATUS_TOPIC, go_node, our_node
from tests.interop.test_v2_gowaku_services import A, B, C, fill_archive, ours_addr
from v2.protocol_ids import STORE_LEGACY

pytestmark = pytest.mark.interop


def flat(pages: list[dict[str, Any]]) -> list[str]:
    return [m["hash"] for p in pages for m in (p["messages"] or [])]


async def test_go_waku_legacy_store_client_pages_our_archive(nursery: trio.Nursery, tmp_path: Path) -> None:
    ours = our_node(16, (32,), store=True, data_dir=tmp_path, store_message_db_url="sqlite://store.sqlite3")
    await start(nursery, ours)
    assert STORE_LEGACY in ours.protocols()
    go, _ = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-relay=false")
    try:
        msgs = await fill_archive(ours)
        by_ts = sorted(msgs, key=lambda x: x[1].timestamp or 0)
        all_hashes = [h.hex() for h, _ in by_ts]
        a_hashes = [h.hex() for h, m in by_ts if m.content_topic == A]
        q: dict[str, Any] = {"peer": ours_addr(ours), "pubsub_topic": STATUS_TOPIC}

        # forward, 10 a page: 10, 10, 10, 5 in timestamp order; the last page has no cursor
        fwd = (await go.request("legacy_store_query", **q, content_topics=[A], forward=True, page_size=10))["pages"]
        assert [len(p["messages"]) for p in fwd] == [10, 10, 10, 5]
        assert flat(fwd) == a_hashes and fwd[-1]["cursor"] is None and fwd[0]["cursor"] is not None
        m0 = next(m for h, m in msgs if h.hex() == a_hashes[0])
        first = fwd[0]["messages"][0]
        assert first["payload"] == m0.payload.hex() and first["meta"] == (m0.meta or b"").hex()
        assert first["timestamp"] == m0.timestamp
        c = fwd[0]["cursor"]  # sender time = the timestamp of the page's last message, our topic
        assert c["sender_time"] == {h.hex(): m.timestamp for h, m in msgs}[a_hashes[9]]
        assert c["pubsub_topic"] == STATUS_TOPIC and len(c["digest"]) == 64

        # backward: newest page first, each page ascending inside
        bwd = (await go.request("legacy_store_query", **q, content_topics=[A], forward=False,
                                page_size=10))["pages"]
        assert [len(p["messages"]) for p in bwd] == [10, 10, 10, 5]
        assert flat(bwd[:1]) == a_hashes[-10:] and flat(bwd[-1:]) == a_hashes[:5]
        assert sorted(flat(bwd)) == sorted(a_hashes)

        # resuming from a cursor go-waku got from us, both directions
        resumed = (await go.request("legacy_store_query", **q, content_topics=[A], forward=True, page_size=10,
                                    cursor=fwd[1]["cursor"]))["pages"]
        assert flat(resumed) == a_hashes[20:]
        back = (await go.request("legacy_store_query", **q, content_topics=[A], forward=False, page_size=10,
                                 cursor=bwd[0]["cursor"]))["pages"]
        assert sorted(flat(back)) == sorted(a_hashes[:-10]) and flat(back[:1]) == a_hashes[-20:-10]

        # several content topics; a time range is inclusive at both ends (legacy semantics)
        ab = (await go.request("legacy_store_query", **q, content_topics=[A, B], page_size=100))["pages"]
        assert sorted(flat(ab)) == sorted(h.hex() for h, m in msgs if m.content_topic in (A, B))
        ts = [m.timestamp or 0 for _, m in by_ts]
        ranged = (await go.request("legacy_store_query", **q, content_topics=[A, B, C], start_time=ts[10],
                                   end_time=ts[20], forward=True, page_size=100))["pages"]
        assert flat(ranged) == all_hashes[10:21]
        everything = (await go.request("legacy_store_query", **q, forward=True, page_size=100))["pages"]
        assert flat(everything) == all_hashes  # no content filter: the whole pubsub topic

        # page size: 0 is the default of 20, more than 100 is clamped to 100
        dflt = (await go.request("legacy_store_query", **q, content_topics=[A, B, C], max_pages=1))["pages"]
        assert len(dflt[0]["messages"]) == 20 and dflt[0]["cursor"] is not None
        big = (await go.request("legacy_store_query", **q, page_size=1000, max_pages=1))["pages"]
        assert len(big[0]["messages"]) == 50 and big[0]["cursor"] is None

        # an unknown content topic: no messages, and go-waku's client reports no page
        none = (await go.request("legacy_store_query", **q, content_topics=["/x/1/none/proto"]))["pages"]
        assert not none
    finally:
        await go.aclose()
