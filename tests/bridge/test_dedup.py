"""Dedup ledger: window, bound, persistence across restarts, and across kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import trio

from bridge.dedup import DedupCache, DedupStore
from tests.helpers.clock import FakeClock

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
