"""The dedup ledger's memory with 1 M keys (docs/performance.md "Dedup ledger at 1 M keys").

Each case runs in a fresh child process (RSS is per process) and adds N sha256 keys (made from a
counter on the fly, so no list of keys is held):

* ``ordered_dict``: the ``OrderedDict`` cache the bridge used until 2026-12
  (tests/helpers/dedup_model.py), the "before";
* ``compact``: :class:`bridge.dedup.DedupCache` (fixed-width slots in arrays + an open-addressing
  index), the "after";
* ``store_reopen``: a SQLite ledger file of N live keys (written directly), then
  :meth:`bridge.dedup.DedupStore.open` as at a restart: the RSS after loading it.

Reported: VmRSS before/after, the growth per key, VmHWM (peak), and the add/lookup cost.
``python -m bench.dedup_memory [N]`` (default 1 000 000).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from bench.procstat import status_kib

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
CASES = ("ordered_dict", "compact", "store_reopen")


def _key(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def _child(case: str, n: int) -> dict[str, Any]:
    from bridge.dedup import DedupCache, DedupStore
    from tests.helpers.dedup_model import OrderedDictDedupCache

    out: dict[str, Any] = {"case": case, "keys": n}
    if case == "store_reopen":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "dedup.sqlite3"
            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE dedup (key BLOB PRIMARY KEY, expires_at REAL NOT NULL)")
            conn.executemany("INSERT INTO dedup VALUES (?, ?)", ((_key(i), 1e12 + i) for i in range(n)))
            conn.commit()
            conn.close()
            rss0 = status_kib("self", "VmRSS")
            store = DedupStore(path, window=600, capacity=max(n, 1000))
            t0 = time.perf_counter()
            loaded = trio.run(store.open)
            out["open_s"] = round(time.perf_counter() - t0, 2)
            out["loaded"] = loaded
            rss1 = status_kib("self", "VmRSS")
            trio.run(store.aclose)
    else:
        cache: DedupCache | OrderedDictDedupCache = (OrderedDictDedupCache if case == "ordered_dict"
                                                     else DedupCache)(600, max(n, 1000))
        rss0 = status_kib("self", "VmRSS")
        t0 = time.perf_counter()
        for i in range(n):
            cache.add(_key(i), 0.0)
        t1 = time.perf_counter()
        hits = sum(cache.seen(_key(i), 1.0) for i in range(0, n, 10))
        t2 = time.perf_counter()
        assert hits == len(range(0, n, 10))
        rss1 = status_kib("self", "VmRSS")
        out["add_us"] = round((t1 - t0) / n * 1e6, 2)  # sha256 of the counter included
        out["seen_us"] = round((t2 - t1) / len(range(0, n, 10)) * 1e6, 2)
    out.update(rss_before_mib=round(rss0 / 1024, 1), rss_after_mib=round(rss1 / 1024, 1),
               growth_mib=round((rss1 - rss0) / 1024, 1), bytes_per_key=round((rss1 - rss0) * 1024 / n),
               peak_mib=round(status_kib("self", "VmHWM") / 1024, 1))
    return out


def main(n: int = 1_000_000) -> Iterator[dict[str, Any]]:
    for case in CASES:
        r = subprocess.run([sys.executable, "-m", "bench.dedup_memory", "_child", case, str(n)], capture_output=True,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        yield json.loads(r.stdout.splitlines()[-1])


if __name__ == "__main__":
    from bench import help_or_continue

    help_or_continue("bench.dedup_memory", __doc__, sys.argv[1:], "[N]")
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]))))
    else:
        for r in main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000):
            print(json.dumps(r), flush=True)
