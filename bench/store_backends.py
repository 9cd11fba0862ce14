"""Store archive on SQLite and on PostgreSQL, side by side: bulk insert rate, single inserts and
page-query p50/p99 at ``--rows`` messages (default 1 M; the issue's size is 10 M).

Each backend gets the same messages (200 B payloads, 100 content topics on one shard, 1 ms
apart), loaded through ``Archive.insert_many`` in transactions of 1 000, then 2 000 single
inserts (one commit each, the rate the service sees), then 2 000 queries of each kind through the
same trio → worker-thread path the store service uses, with random topics, cursors and hashes.
The load is timed in tenths, so a slowdown as the indexes outgrow memory shows.

PostgreSQL: a throwaway server (Debian's ``postgresql``, see tests/helpers/postgres.py) with
fsync on and ``synchronous_commit=off``, the same durability as the SQLite archive's WAL with
``synchronous=NORMAL`` (a process kill loses nothing, an OS crash may lose the last commits);
``--db-url postgres://…`` measures an existing server instead (its database must be empty).

    python -m bench store_backends --rows 1000000 [--backends sqlite,postgres] [--db-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bench.v2_store import BASE_NS, PUBSUB, TOPICS, _ms, _msg, _plan, bulk_load
from v2.store.archive import Archive
from v2.store.planner import QueryPlan

# The same messages, page plans and percentiles as bench/v2_store.py (the SQLite-only archive
# bench), so the two benches' figures compare.
QUERIES = 2000


async def _bench(backend: str, url: str, rows: int, out: list[dict[str, Any]], size_of: Callable[[], int]) -> None:
    archive = Archive(url)
    await archive.open()
    rng = random.Random(7)
    load, tenths, sample = await bulk_load(archive, rows, rng)
    out.append({"backend": backend, "case": "bulk load (1 000 per transaction)", "rows": rows,
                "rows_per_s": round(rows / load), "seconds": round(load, 1),
                "rows_per_s_by_tenth": tenths, "db_mib": round(size_of() / 2**20)})

    if backend == "postgres":
        # What autovacuum does within a minute of a load (it re-analyses after each 10 % of growth):
        # the planner then walks the topic index instead of sorting a topic.
        _analyze(url)

    single = [_msg(rows + i) for i in range(QUERIES)]
    times = []
    for it in single:
        s0 = time.perf_counter()
        await archive.insert(*it)
        times.append(time.perf_counter() - s0)
    out.append({"backend": backend, "case": "single insert (one commit each)", "rows": rows,
                "inserts_per_s": round(len(single) / sum(times)), **_ms(times)})

    def content_page() -> QueryPlan:
        i, h = rng.choice(sample)
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=(TOPICS[i % len(TOPICS)],),
                     pagination_cursor=h, pagination_forward=rng.random() < 0.5)

    def newest_page() -> QueryPlan:  # js-waku's default: backward from the newest
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=(rng.choice(TOPICS),))

    def time_range_page() -> QueryPlan:
        i, _ = rng.choice(sample)
        t = BASE_NS + i * 10**6
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=(TOPICS[i % len(TOPICS)],),
                     time_start=t, time_end=t + 3600 * 10**9, pagination_forward=True)

    def three_topics() -> QueryPlan:
        i, h = rng.choice(sample)
        return _plan(include_data=True, pubsub_topic=PUBSUB, content_topics=(TOPICS[i % len(TOPICS)],
                     *rng.sample(TOPICS, 2)), pagination_cursor=h, pagination_forward=True)

    def lookup() -> QueryPlan:
        return _plan(include_data=True, message_hashes=(rng.choice(sample)[1],))

    for case, make in (("content-topic page (20, data, random cursor)", content_page),
                       ("newest page of a topic (20, data, no cursor)", newest_page),
                       ("time-range page of a topic (20, data, 1 h window)", time_range_page),
                       ("3 content topics page (20, data, random cursor)", three_topics),
                       ("hash lookup (1 hash, data)", lookup)):
        samples = []
        for _ in range(QUERIES):
            p = make()
            s0 = time.perf_counter()
            await archive.find(p)
            samples.append(time.perf_counter() - s0)
        out.append({"backend": backend, "case": f"Archive.find: {case}", "rows": rows, "queries": QUERIES,
                    **_ms(samples)})
    s0 = time.perf_counter()
    await archive.aclose()
    archive = Archive(url)
    await archive.open()  # counts the rows
    out.append({"backend": backend, "case": "reopen (schema check + row count)", "rows": archive.message_count,
                "seconds": round(time.perf_counter() - s0, 2)})
    await archive.aclose()


def run(rows: int, backends: tuple[str, ...] = ("sqlite", "postgres"), db_url: str | None = None) -> Iterator[
        dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    try:
        for backend in backends:
            out: list[dict[str, Any]] = []
            if backend == "sqlite":
                db = tmp / "store.sqlite3"
                trio.run(_bench, backend, f"sqlite://{db}", rows, out,
                         lambda: sum(f.stat().st_size for f in tmp.iterdir() if f.name.startswith("store.")))
            elif db_url is not None:
                trio.run(_bench, backend, db_url, rows, out, partial(_pg_size, db_url))
            else:
                from tests.helpers.postgres import PostgresServer

                with PostgresServer(durable=True, shared_buffers="128MB") as pg:  # Debian's default size
                    url = pg.new_database()
                    trio.run(_bench, backend, url, rows, out, partial(_pg_size, url))
            yield from out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("ANALYZE messages")


def _pg_size(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        row = conn.execute("SELECT pg_total_relation_size('messages')").fetchone()
        assert row is not None
        return int(row[0])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench store_backends", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="messages loaded into each backend (default 1 M)")
    p.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    p.add_argument("--db-url", default=None, help="an existing, empty PostgreSQL database instead of a throwaway one")
    return p


def cli(argv: list[str]) -> None:
    a = _parser().parse_args(argv)
    backends = tuple(b.strip() for b in a.backends.split(",") if b.strip())
    print(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}), flush=True)
    for r in run(a.rows, backends, a.db_url):
        print(json.dumps({"bench": "store_backends", **r}), flush=True)


def main() -> Iterator[dict[str, Any]]:
    """``python -m bench`` (all modules): 100 000 rows per backend."""
    yield from run(int(os.environ.get("WAKU_BENCH_STORE_ROWS", "100000")))


if __name__ == "__main__":
    import sys

    cli(sys.argv[1:])
