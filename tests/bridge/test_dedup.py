"""Dedup ledger: window, bound, persistence across restarts, and across kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.dedup import DedupCache, DedupStore
from tests.helpers.clock import FakeClock
from tests.helpers.dedup_model import OrderedDictDedupCache

ROOT = Path(__file__).resolve().parents[2]


def test_cache_window_and_bound() -> None:
    c = DedupCache(window=10, capacity=3)
    c.add(b"a", 0)
    assert c.seen(b"a", 10) and not c.seen(b"a", 10.5)
    for k in (b"b", b"c", b"d"):
        c.add(k, 1)
    assert len(c) == 3 and not c.seen(b"a", 1)  # the oldest went to make room
    assert c.expire(12) == 3 and len(c) == 0


async def test_store_survives_restart(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "dedup.sqlite3"
    s = DedupStore(path, window=60, capacity=100, clock=clock)
    await s.open()
    assert await s.check_and_add(b"k1")
    assert not await s.check_and_add(b"k1")
    await s.add(b"k2")
    await s.aclose()
    clock.now += 30
    s2 = DedupStore(path, window=60, capacity=100, clock=clock)
    assert await s2.open() == 2
    assert not await s2.check_and_add(b"k1") and s2.seen(b"k2")
    clock.now += 31  # past the window: forgotten, also on disk
    assert await s2.prune() == 2
    assert await s2.check_and_add(b"k1")
    await s2.aclose()


async def test_store_survives_kill_9(tmp_path: Path) -> None:
    """A process that acknowledged keys and was SIGKILLed mid-stream loses none of them."""
    path = tmp_path / "dedup.sqlite3"
    script = textwrap.dedent(f"""
        import sys, trio
        from bridge.dedup import DedupStore
        async def main():
            s = DedupStore({str(path)!r}, window=600, capacity=100000)
            await s.open()
            i = 0
            while True:
                await s.add(i.to_bytes(8, "big"))
                print(i, flush=True)  # acknowledged = committed
                i += 1
        trio.run(main)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    acked = -1
    while acked < 500:
        acked = int(await trio.to_thread.run_sync(proc.stdout.readline))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = DedupStore(path, window=600, capacity=100000)
    loaded = await s.open()
    assert loaded >= acked + 1
    assert all(s.seen(i.to_bytes(8, "big")) for i in range(acked + 1))
    await s.aclose()


# --- the compact cache against the OrderedDict semantics it replaced (tests/helpers/dedup_model.py) ---

_KEYS = [bytes([i]) * (1 + i % 32) for i in range(12)]  # short and full-width keys
_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(_KEYS), st.integers(0, 3),
              st.none() | st.floats(0, 100, allow_nan=False)),
    st.tuples(st.just("seen"), st.sampled_from(_KEYS), st.integers(0, 3), st.none()),
    st.tuples(st.just("expire"), st.sampled_from(_KEYS), st.integers(0, 3), st.none()),
), max_size=120)


def _check_against_model(ops: list[tuple[str, bytes, int, float | None]], window: float, capacity: int) -> None:
    real, model = DedupCache(window, capacity), OrderedDictDedupCache(window, capacity)
    now = 0.0
    for op, key, dt, exp in ops:
        now += dt
        if op == "add":
            assert real.add(key, now, exp) == model.add(key, now, exp)
        elif op == "seen":
            assert real.seen(key, now) == model.seen(key, now)
        else:
            assert real.expire(now) == model.expire(now)
        assert len(real) == len(model)
    assert all(real.seen(k, now) == model.seen(k, now) for k in _KEYS)


@settings(max_examples=150, deadline=None)
@given(_ops, st.sampled_from([1.0, 5.0, 30.0]), st.integers(1, 8))
def test_compact_cache_matches_ordered_dict(ops: list[tuple[str, bytes, int, float | None]], window: float,
                                            capacity: int) -> None:
    _check_against_model(ops, window, capacity)


def test_compact_cache_matches_ordered_dict_long_run() -> None:
    """Thousands of keys: the index grows, and the log is trimmed from the front many times."""
    rnd = random.Random(11)
    keys = [rnd.randbytes(32) for _ in range(3000)]
    ops: list[tuple[str, bytes, int, float | None]] = []
    for _ in range(30_000):
        r = rnd.random()
        op = "add" if r < 0.6 else "seen" if r < 0.95 else "expire"
        ops.append((op, rnd.choice(keys), rnd.choice((0, 0, 1)), None))
    _check_against_model(ops, 40.0, 2000)


def test_compact_cache_rejects_long_keys() -> None:
    with pytest.raises(ValueError):
        DedupCache(10, 10).add(b"x" * 33, 0)


async def test_prune_deletes_in_chunks_and_a_store_works_before_open(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "dedup.sqlite3"
    s = DedupStore(path, window=60, capacity=100, clock=clock)
    s.PRUNE_CHUNK = 3  # several chunks for 10 rows
    for i in range(10):  # no open(): the table is made on first use
        await s.add(i.to_bytes(8, "big"))
    clock.now += 30
    await s.add(b"young")
    clock.now += 31  # the first ten are past the window, "young" is not
    assert await s.prune() == 10
    await s.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM dedup").fetchone() == (1,)  # gone from disk too
    conn.close()
    s2 = DedupStore(path, window=60, capacity=100, clock=clock)
    assert await s2.open() == 1 and s2.seen(b"young")
    await s2.aclose()
