"""Store v3 archive at 1 M rows in a file DB: insert rate, page-query and hash-lookup latency.

1 M messages (200 B payloads, 100 content topics on one shard, 1 ms apart) are loaded in
transactions of 1 000 (``insert_many``), then single inserts measure the rate the service sees
(one commit per relayed message, through the worker thread).  Queries go through the same
trio → worker-thread path the service uses: ``Archive.find`` alone, and the whole answer
(decode, plan, find, encode) as the service builds it.  Each figure is a p50/p99 over random
topics, cursors and hashes.  ``WAKU_BENCH_STORE_ROWS`` overrides the row count.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from v2.core.message import WakuMessage, message_hash
from v2.store.archive import Archive
from v2.store.planner import QueryPlan, plan_query
from v2.store.protocol import StoreService
from v2.store.rpc_codec import StoreQuery, encode_query, encode_response

PUBSUB = "/waku/2/rs/0/0"
TOPICS = [f"/bench/1/topic-{i}/proto" for i in range(100)]
BASE_NS = 1_700_000_000 * 10**9
BATCH = 1000


def _msg(i: int) -> tuple[str, bytes, WakuMessage, bytes]:
    m = WakuMessage(i.to_bytes(8, "big") + b"\x5a" * 192, TOPICS[i % len(TOPICS)], timestamp=BASE_NS + i * 10**6)
    return PUBSUB, message_hash(PUBSUB, m), m, m.encode()


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(s), 3), "p99_ms": round(1000 * s[int(0.99 * len(s)) - 1], 3)}


def _plan(**kw: Any) -> QueryPlan:
    p = plan_query(StoreQuery("bench", **kw))
    assert isinstance(p, QueryPlan)
    return p


async def bulk_load(archive: Archive, rows: int,
                    rng: random.Random) -> tuple[float, list[int], list[tuple[int, bytes]]]:
    """Load ``rows`` messages in transactions of ``BATCH``: (seconds spent in the archive, the
    rows/s of each tenth of the load, a random sample of (index, hash) for the queries).  The
    time to build the messages is not counted."""
    sample: list[tuple[int, bytes]] = []
    tenths: list[int] = []
    load = gen = 0.0
    mark, last_done = time.perf_counter(), 0
    for start in range(0, rows, BATCH):
        g0 = time.perf_counter()
        batch = [_msg(i) for i in range(start, min(start + BATCH, rows))]
        gen += time.perf_counter() - g0
        await archive.insert_many(batch)
        if rng.random() < 0.2:
            sample += [(i, batch[i - start][1]) for i in rng.sample(range(start, start + len(batch)), 5)]
        done = start + len(batch)
        if done * 10 // rows > len(tenths):
            now = time.perf_counter()
            part = now - mark - gen
            load += part
            tenths.append(round((done - last_done) / part))
            mark, gen, last_done = now, 0.0, done
    return load, tenths, sample


async def _run(rows: int, db: Path, out: list[dict[str, Any]]) -> None:
    archive = Archive(f"sqlite://{db}")
    await archive.open()
    rng = random.Random(7)
    load, _, sample_hashes = await bulk_load(archive, rows, rng)
    out.append({"case": "bulk load (1 000 per transaction)", "rows": rows,
                "rows_per_s": round(rows / load), "seconds": round(load, 1),
                "db_mib": round(sum(f.stat().st_size for f in db.parent.iterdir()) / 2**20)})

    single = [_msg(rows + i) for i in range(3000)]
    times = []
    for it in single:
        s0 = time.perf_counter()
        await archive.insert(*it)
        times.append(time.perf_counter() - s0)
    out.append({"case": "single insert (one commit each)", "rows": rows, "inserts": len(single),
                "inserts_per_s": round(len(single) / sum(times)), **_ms(times)})

    async def timed(n: int, make: Any, run: Any) -> list[float]:
        ts = []
        for _ in range(n):
            arg = make()
            s0 = time.perf_counter()
            await run(arg)
            ts.append(time.perf_counter() - s0)
        return ts

    def content_query() -> QueryPlan:
        i, h = rng.choice(sample_hashes)
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=(TOPICS[i % len(TOPICS)],),
                     pagination_cursor=h, pagination_forward=rng.random() < 0.5)

    def newest_page() -> QueryPlan:
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=(rng.choice(TOPICS),))

    def three_topics() -> QueryPlan:
        i, h = rng.choice(sample_hashes)
        topics = (TOPICS[i % len(TOPICS)], *rng.sample(TOPICS, 2))
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=topics, pagination_cursor=h,
                     pagination_forward=True)

    def lookup() -> QueryPlan:
        return _plan(include_data=True, message_hashes=(rng.choice(sample_hashes)[1],))

    n = 2000
    for case, make in (("content-topic page (20, data, random cursor)", content_query),
                       ("newest page of a topic (20, data, no cursor)", newest_page),
                       ("3 content topics page (20, data, random cursor)", three_topics),
                       ("hash lookup (1 hash, data)", lookup)):
        samples = await timed(n, make, archive.find)
        out.append({"case": f"Archive.find: {case}", "rows": rows, "queries": n, **_ms(samples)})

    service = StoreService(archive, CollectorRegistry())

    async def answer(raw: bytes) -> None:
        encode_response(await service.answer(raw))

    def page_request() -> bytes:
        i, h = rng.choice(sample_hashes)
        return encode_query(StoreQuery("bench", include_data=True, pubsub_topic=PUBSUB,
                                       content_topics=(TOPICS[i % len(TOPICS)],), pagination_cursor=h,
                                       pagination_forward=True))

    def lookup_request() -> bytes:
        return encode_query(StoreQuery("bench", include_data=True, message_hashes=(rng.choice(sample_hashes)[1],)))

    for case, make in (("content-topic page", page_request), ("hash lookup", lookup_request)):
        samples = await timed(n, make, answer)
        out.append({"case": f"service answer (decode+plan+find+encode): {case}", "rows": rows, "queries": n,
                    **_ms(samples)})
    await archive.aclose()

    # Reopen (counts the rows) with a time policy whose cutoff falls on the 10 % oldest messages.
    cut = rows // 10
    archive = Archive(f"sqlite://{db}", retention=f"time:{rows}")
    s0 = time.perf_counter()
    await archive.open()
    reopen = time.perf_counter() - s0
    s0 = time.perf_counter()
    deleted = await archive.apply_retention((BASE_NS + cut * 10**6) / 1e9 + rows)
    purge = time.perf_counter() - s0
    out.append({"case": "reopen + time retention of the oldest 10 %", "rows": archive.message_count + deleted,
                "reopen_s": round(reopen, 2), "deleted": deleted, "purge_s": round(purge, 1),
                "deleted_per_s": round(deleted / purge)})
    await archive.aclose()

    # Reopen with a size policy of half the file: the first open converts the file to incremental
    # vacuum (one full VACUUM); the periodic run purges the oldest down to 80 % of the limit.
    before = (await trio.Path(db).stat()).st_size
    limit_mb = max(1, before // 2 // (1 << 20))
    archive = Archive(f"sqlite://{db}", retention=f"size:{limit_mb}MB")
    s0 = time.perf_counter()
    await archive.open()
    reopen = time.perf_counter() - s0
    rows_before = archive.message_count
    s0 = time.perf_counter()
    deleted = await archive.apply_retention()
    purge = time.perf_counter() - s0
    size = await archive.database_size()
    out.append({"case": f"size retention: limit {limit_mb} MiB on a {before / (1 << 20):.0f} MiB file",
                "rows": rows_before, "open_convert_s": round(reopen, 2), "deleted": deleted,
                "purge_s": round(purge, 2), "deleted_per_s": round(deleted / purge) if purge else None,
                "db_mib_after": round(size / (1 << 20), 1)})
    await archive.aclose()


def main() -> Iterator[dict[str, Any]]:
    rows = int(os.environ.get("WAKU_BENCH_STORE_ROWS", "1000000"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    out: list[dict[str, Any]] = []
    try:
        trio.run(_run, rows, tmp / "store.sqlite3", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    yield from out


if __name__ == "__main__":
    import sys as _sys

    from bench import help_or_continue

    help_or_continue("bench.v2_store", __doc__, _sys.argv[1:], '')
    for r in main():
        print(r)
