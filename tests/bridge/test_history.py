"""The pure parts of the takeover's sink history check (bridge/history.py): which store queries
cover the pending items, and which key a stored message has.  The lookup itself runs in
test_pipeline.py (injected histories) and tests/v2/store/test_history.py (real store peers)."""

from __future__ import annotations

import time

from bridge.history import MAX_HISTORY_TOPICS, history_requests, sink_key
from bridge.translate import NS, V1ToV2, v1_to_v2
from v1.waku.envelope import Envelope
from v2.core.message import WakuMessage


def test_history_requests_batch_topics_and_cover_exact_windows() -> None:
    items = []
    for i in range(2 * MAX_HISTORY_TOPICS + 3):
        for dt in (0, 1, 5):  # seconds 1_000_000 + {0, 1, 5}: two 2-second chunks
            e = Envelope(1_000_000 + dt + 10, 10, i.to_bytes(4, "big"), b"x")
            out = v1_to_v2(e, cluster_id=1, num_shards=8, pubsub_topic="/waku/2/rs/1/0")
            assert isinstance(out, V1ToV2)
            items.append(out)
    reqs = history_requests(items, chunk_s=2)
    assert [len(r.content_topics) for r in reqs] == [10, 10, 10, 10, 3, 3]
    topics = sorted({i.message.content_topic for i in items})
    assert sorted(t for r in reqs for t in r.content_topics) == sorted(topics * 2)  # each topic, both chunks
    for r in reqs:
        assert (r.time_start, r.time_end) in ((1_000_000 * NS, 1_000_002 * NS), (1_000_005 * NS, 1_000_006 * NS))
    for it in items:  # every item is inside one query
        ts = it.message.timestamp or 0
        assert any(it.message.content_topic in r.content_topics and r.time_start <= ts < r.time_end for r in reqs)


def test_sink_key_is_the_key_of_the_v2_to_v1_translation() -> None:
    m = WakuMessage(b"k", "/waku/1/0x1a2b3c4d/rfc26", version=1, timestamp=time.time_ns())
    assert sink_key(m) is not None
    assert sink_key(WakuMessage(b"k", "/app/1/chat/proto", timestamp=1)) is None
