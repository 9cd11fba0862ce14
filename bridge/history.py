"""The sink history check of a takeover (docs/operations.md "Warm standby and takeover").

A standby that was down missed v2 messages; on reconnect its v1 peers re-offer their pools, which
hold the v1 translations of those messages, and it cannot tell them from v1 originals.  Before
bridging pending v1->v2 items the pipeline asks the v2 side's history (an injected
:data:`SinkHistory`; the service's is :func:`v2.store.client.query_history`: our own archive and
connected store peers) for their content topics and timestamps; a stored message with the item's
dedup key (:func:`sink_key`) already exists on v2, and the item is skipped.

:func:`history_requests` and :func:`sink_key` are pure; :func:`find_in_history` runs the queries
at once under one deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import trio

from bridge.metrics import BridgeMetrics
from bridge.payload import wrap_unencrypted
from bridge.topics import InvalidTopic, NotBridgeable, v1_topic_of
from bridge.translate import NS, V1ToV2, dedup_key
from v2.core.message import WakuMessage
from v2.store.common import MAX_CONTENT_TOPICS, HistoryRequest, HistoryResult

__all__ = [
    "MAX_HISTORY_TOPICS",
    "HistoryRequest",
    "HistoryResult",
    "SinkHistory",
    "find_in_history",
    "history_requests",
    "sink_key",
]

MAX_HISTORY_TOPICS = MAX_CONTENT_TOPICS  # content topics per store query (nwaku's limit, waku-v2.md §7)

log = logging.getLogger(__name__)


SinkHistory = Callable[[HistoryRequest, float], Awaitable[HistoryResult]]
"""``history(request, deadline)``: what the v2 side's history holds for ``request``, from every
source that can answer (``deadline`` is a ``trio.current_time()`` value: return by then with what
arrived, a source that did not finish listed in ``failures``)."""


def sink_key(msg: WakuMessage) -> bytes | None:
    """The dedup key a stored v2 message has (that of its v2->v1 translation); None if it has no
    v1 form.  Same rule as :func:`bridge.translate.v2_to_v1`, without the time checks."""
    try:
        topic = v1_topic_of(msg.content_topic)
    except (NotBridgeable, InvalidTopic):
        return None
    return dedup_key(topic, msg.payload if msg.version == 1 else wrap_unencrypted(msg.payload))


def history_requests(items: Iterable[V1ToV2], chunk_s: int = 2) -> list[HistoryRequest]:
    """Queries covering ``items``: per pubsub topic, content topics in batches of at most
    :data:`MAX_HISTORY_TOPICS`, and per batch one query per ``chunk_s`` seconds of timestamps that
    hold an item, [first second, last second + 1 s) (short windows run in parallel: a takeover
    after a restart looks up a pool's worth, TTL seconds of traffic).

    A v1->v2 item's timestamp is the envelope's creation second; the v2 message it may be the
    translation of has a timestamp in that second (v2_to_v1 floors ns to s), and a translation of
    a v1 original has exactly it: the windows are exact, no slack needed."""
    by_topic: dict[str, dict[str, set[int]]] = {}
    for it in items:
        sec = (it.message.timestamp or 0) // NS
        by_topic.setdefault(it.pubsub_topic, {}).setdefault(it.message.content_topic, set()).add(sec)
    out = []
    step = max(1, chunk_s)
    for pubsub, topics in sorted(by_topic.items()):
        names = sorted(topics)
        for i in range(0, len(names), MAX_HISTORY_TOPICS):
            batch = names[i:i + MAX_HISTORY_TOPICS]
            chunks = sorted({sec // step for n in batch for sec in topics[n]})
            for c in chunks:
                secs = [sec for n in batch for sec in topics[n] if sec // step == c]
                out.append(HistoryRequest(pubsub, tuple(batch), min(secs) * NS, (max(secs) + 1) * NS))
    return out


async def find_in_history(history: SinkHistory, items: Sequence[V1ToV2], metrics: BridgeMetrics, *,
                          deadline_s: float, chunk_s: int) -> set[bytes]:
    """The keys of ``items`` that the sink's history holds.  Bounded by ``deadline_s`` in total;
    a query that fails or runs out of time is counted and treated as "not found" (the caller
    then bridges: a duplicate is better than a loss, docs/failover.md)."""
    if not items:
        return set()
    wanted = {it.key for it in items}
    found: set[bytes] = set()
    deadline = trio.current_time() + deadline_s

    async def one(req: HistoryRequest) -> None:
        try:
            res = await history(req, deadline)
        except Exception as exc:  # a broken lookup must not stop the takeover
            log.warning("sink history query failed: %s", exc)
            metrics.takeover_history_queries.labels("failed").inc()
            return
        for reason in res.failures:
            log.info("sink history source failed: %s", reason)
        metrics.takeover_history_queries.labels("ok").inc(max(0, res.sources - len(res.failures)))
        metrics.takeover_history_queries.labels("failed").inc(len(res.failures))
        for m in res.messages:
            k = sink_key(m)
            if k in wanted:
                found.add(k)

    requests = history_requests(items, chunk_s)
    # A grace of 0.5 s past the deadline for the lookup to return what it has; then cut.
    with trio.move_on_at(deadline + 0.5) as scope:
        async with trio.open_nursery() as nursery:
            for req in requests:
                nursery.start_soon(one, req)
    if scope.cancelled_caught:
        metrics.takeover_history_queries.labels("timeout").inc()
        log.warning("sink history lookup cut at its deadline (%.1f s)", deadline_s)
    log.info("sink history: %d of %d pending v1->v2 found on v2 (%d queries, %.2f s)", len(found), len(wanted),
             len(requests), deadline_s - (deadline - trio.current_time()))
    return found
