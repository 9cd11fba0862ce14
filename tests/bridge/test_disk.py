"""The disk watch (bridge/disk.py, pure) and the dedup ledger and aggregates on a real full tmpfs.

The ledger must neither raise nor forget when its commit fails: the key stays in memory (so the
process never bridges it twice), waits in the bounded unsaved list, and reaches the file in one
transaction once the ballast is gone.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bridge.aggregates import AggregatesWriter, read_hourly
from bridge.app.admin import health_cell
from bridge.app.keys import load_or_create_key
from bridge.dedup import DedupStore
from bridge.disk import DiskWatch, Store
from bridge.errors import ConfigError
from tests.helpers.tmpfs import fill, tmpfs


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_backoff_doubles_to_the_cap_and_a_success_clears() -> None:
    errors: list[Store] = []
    w = DiskWatch(base_delay=1.0, max_delay=8.0, on_error=errors.append)
    assert w.ok and w.may_write(Store.DEDUP, 0.0) and w.reason() is None
    assert w.failed(Store.DEDUP, "database or disk is full", 10.0) is True  # the first one: log it
    assert not w.ok and not w.may_write(Store.DEDUP, 10.5) and w.may_write(Store.DEDUP, 11.0)
    assert w.may_write(Store.AGGREGATES, 10.5)  # per store
    delays = []
    for t in (11.0, 13.0, 17.0, 25.0, 33.0):
        assert w.failed(Store.DEDUP, "database or disk is full", t) is False
        delays.append(w.failing[Store.DEDUP].retry_at - t)
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert w.reason() == "dedup: database or disk is full"
    assert w.as_dict(40.0)["failing"] == {"dedup": {"for_s": 30.0, "failures": 6, "error": "database or disk is full"}}
    assert errors == [Store.DEDUP] * 6 and w.errors[Store.DEDUP] == 6
    f = w.succeeded(Store.DEDUP)
    assert f is not None and f.since == 10.0 and f.count == 6
    assert w.ok and w.succeeded(Store.DEDUP) is None and w.may_write(Store.DEDUP, 0.0)


def _keys(path: Path) -> set[bytes]:
    conn = sqlite3.connect(path)
    try:
        return {k for (k,) in conn.execute("SELECT key FROM dedup")}
    finally:
        conn.close()


async def test_dedup_commit_on_a_full_disk_keeps_the_key_and_saves_it_later(tmp_path: Path) -> None:
    clock = Clock()
    with tmpfs(tmp_path / "fs", "8m") as fs:  # room for the WAL of the first commits (a page or two each)
        disk = DiskWatch()
        store = DedupStore(fs / "bridge.sqlite3", window=600, capacity=100_000, clock=clock, disk=disk)
        await store.open()
        before = [os.urandom(32) for _ in range(100)]
        for k in before:
            await store.add(k)
        assert disk.ok and store.unsaved == 0
        fill(fs / "ballast")
        during = [os.urandom(32) for _ in range(3000)]  # a WAL frame or two each: far more than is left
        for k in during:
            assert await store.check_and_add(k)  # never raises
            clock.t += 0.01
        assert not disk.ok and "full" in (disk.reason() or "")
        assert store.unsaved > 0 and all(store.seen(k) for k in during)
        assert not await store.check_and_add(during[-1])  # a duplicate is still a duplicate
        # backoff: the failed writes are far fewer than the keys
        assert disk.errors[Store.DEDUP] < 20, disk.errors
        (fs / "ballast").unlink()
        clock.t += 60
        assert store.save_unsaved() and store.unsaved == 0 and disk.ok
        await store.aclose()
        assert set(before) | set(during) <= _keys(fs / "bridge.sqlite3")


async def test_dedup_unsaved_is_bounded(tmp_path: Path) -> None:
    clock = Clock()
    with tmpfs(tmp_path / "fs", "1m") as fs:
        store = DedupStore(fs / "bridge.sqlite3", window=600, capacity=100_000, clock=clock, max_unsaved=50)
        await store.open()
        fill(fs / "ballast")
        for _ in range(3000):
            await store.add(os.urandom(32))
        assert store.unsaved <= 50 and store.unsaved_dropped > 0
        assert len(store) == 3000  # memory keeps them all: this process still dedups them
        (fs / "ballast").unlink()
        await store.aclose()


async def test_dedup_open_on_a_full_disk_starts_in_memory(tmp_path: Path) -> None:
    clock = Clock()
    with tmpfs(tmp_path / "fs", "1m") as fs:
        fill(fs / "ballast")
        disk = DiskWatch()
        store = DedupStore(fs / "bridge.sqlite3", window=600, capacity=1000, clock=clock, disk=disk)
        assert await store.open() == 0
        k = os.urandom(32)
        assert await store.check_and_add(k) and not disk.ok
        (fs / "ballast").unlink()
        clock.t += 60
        assert store.save_unsaved() and disk.ok
        await store.aclose()
        assert _keys(fs / "bridge.sqlite3") == {k}


async def test_dedup_restart_on_a_full_disk_still_knows_its_keys(tmp_path: Path) -> None:
    clock = Clock()
    with tmpfs(tmp_path / "fs", "8m") as fs:
        store = DedupStore(fs / "bridge.sqlite3", window=600, capacity=1000, clock=clock)
        await store.open()
        keys = [os.urandom(32) for _ in range(200)]
        for k in keys:
            await store.add(k)
        await store.aclose()  # a clean stop: the WAL is checkpointed and removed
        fill(fs / "ballast")
        disk = DiskWatch()
        again = DedupStore(fs / "bridge.sqlite3", window=600, capacity=1000, clock=clock, disk=disk)
        assert await again.open() == 200 and not disk.ok  # the -shm cannot be created: read immutable
        assert all(again.seen(k) for k in keys)
        (fs / "ballast").unlink()
        fresh = os.urandom(32)
        clock.t += 60
        await again.add(fresh)  # the connection is made now
        assert disk.ok and again.unsaved == 0
        await again.aclose()
        assert _keys(fs / "bridge.sqlite3") == {*keys, fresh}


async def test_aggregates_flush_on_a_full_disk_keeps_the_counts(tmp_path: Path) -> None:
    clock = Clock(3600.0 * 500_000)
    with tmpfs(tmp_path / "fs", "8m") as fs:
        disk = DiskWatch()
        w = AggregatesWriter(fs / "aggregates.sqlite3", clock=clock, disk=disk)
        await w.store.open()
        fill(fs / "ballast")
        for i in range(2000):  # distinct topics: rows enough to need new pages
            w.record("v1_to_v2", f"/app/1/topic-{i}/proto", 100, clock())
        assert await w.flush() == 0 and not disk.ok
        assert await w.flush() == 0 and disk.errors[Store.AGGREGATES] == 1  # backoff: not tried again yet
        (fs / "ballast").unlink()
        clock.t += 60
        assert await w.flush() == 2000 and disk.ok
        await w.store.aclose()
        rows = read_hourly(fs / "aggregates.sqlite3")
        assert len(rows) == 2000 and sum(r.count for r in rows) == 2000


@pytest.mark.parametrize("size", ["1m"])
async def test_ballast_fills_the_tmpfs(tmp_path: Path, size: str) -> None:
    with tmpfs(tmp_path / "fs", size) as fs:
        n = fill(fs / "ballast")
        assert 900_000 < n <= 1024 * 1024
        st = os.statvfs(fs)
        assert st.f_bavail == 0


def test_the_status_table_names_a_bad_disk() -> None:
    assert health_cell({"v1": True, "v2": True, "disk": False}) == "no disk"
    assert health_cell({"v1": False, "v2": True, "disk": False}) == "no v1+disk"
    assert health_cell({"v1": True, "v2": True}) == "ok"  # an older instance's report


def test_a_node_key_that_does_not_fit_leaves_no_empty_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        (fs / "A").mkdir()
        fill(fs / "ballast")
        with pytest.raises(ConfigError, match="No space left on device"):
            load_or_create_key(fs / "A" / "nodekey-v1")
        assert not (fs / "A" / "nodekey-v1").exists()  # the next start, with space, creates it
        (fs / "ballast").unlink()
        assert len(load_or_create_key(fs / "A" / "nodekey-v1")) == 64
