"""Takeover time of the failover electors: SIGKILL / SIGTERM of the active, TTL 3 s.

Two elector-only candidate processes (``python -m failover``) per backend: sqlite (takeover by
lease expiry), sqlite + flock (the kernel releases the dead leader's flock), etcd (one loopback
member on free ports, started here; needs the ``etcd`` binary).  Each run faults the active at a
random phase of its renew cycle and measures signal -> the standby's "elected" event (both on
CLOCK_MONOTONIC); a fresh candidate then replaces the victim for the next run.  Timing:
renew 0.5 s, RPC timeout 0.5 s, safety 0.5 s (renew + 2 x RPC + safety = 2 s < TTL 3 s).
"""

from __future__ import annotations

import itertools
import random
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from tests.helpers.candidates import Candidate, assert_one_active, spawn_pair
from tests.helpers.etcd import EtcdCluster, etcd_available
from tests.helpers.wait import wait_until

__all__ = ["main"]

TTL = 3.0
KW: dict[str, Any] = {"ttl": TTL, "renew": 0.5, "rpc_timeout": 0.5, "safety": 0.5}
RUNS = 5


def _p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def _elected_after(c: Candidate, k: int) -> Callable[[], bool]:
    return lambda: len(c.elected()) > k


def _reported(c: Candidate) -> Callable[[], bool]:
    return lambda: bool(c.states())


async def _runs(url: str, sig: int, n: int, extra: tuple[str, ...]) -> tuple[list[float], list[int]]:
    times: list[float] = []
    kw = {**KW, "extra": extra}
    async with trio.open_nursery() as nursery:
        leader, standby = await spawn_pair(nursery, url, **kw)
        cands = [leader, standby]
        tokens = [int(leader.token or 0)]
        try:
            for _ in range(n):
                await trio.sleep(random.uniform(0.5, 1.0))  # a random phase of the renew cycle
                before = len(standby.elected())
                t0 = leader.send(sig)
                await wait_until(_elected_after(standby, before), 15, "takeover")
                times.append(standby.elected()[-1]["t"] - t0)
                tokens.append(int(standby.elected()[-1]["token"]))
                await trio.to_thread.run_sync(leader.proc.wait)
                fresh = Candidate(url, leader.identity, **kw)
                nursery.start_soon(fresh.pump)
                cands.append(fresh)
                await wait_until(_reported(fresh), 15, "fresh standby")
                assert assert_one_active(cands) is standby
                leader, standby = standby, fresh
        finally:
            for c in cands:
                c.stop()
            nursery.cancel_scope.cancel()
    return times, tokens


def _result(backend: str, fault: str, times: list[float], tokens: list[int]) -> dict[str, Any]:
    return {"backend": backend, "fault": fault, "ttl_s": TTL, "runs": len(times),
            "min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "p90_s": round(_p90(times), 3), "max_s": round(max(times), 3),
            "all_s": [round(t, 3) for t in times], "tokens": tokens,
            "tokens_strictly_increase": all(a < b for a, b in itertools.pairwise(tokens))}


def main(runs: int = RUNS) -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        root = Path(tmp)
        backends: list[tuple[str, str, tuple[str, ...]]] = [
            ("sqlite", f"sqlite:{root / 'a.sqlite3'}", ("--no-flock",)),
            ("sqlite+flock", f"sqlite:{root / 'b.sqlite3'}", ()),
        ]
        cluster = EtcdCluster.start(root / "etcd", 1) if etcd_available() else None
        try:
            if cluster is not None:
                backends.append(("etcd", cluster.url + "/bench", ()))
            for name, url, extra in backends:
                for fault, sig in (("SIGKILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
                    t0 = time.monotonic()
                    times, tokens = trio.run(_runs, f"{url}-{fault}" if name == "etcd" else url, sig, runs, extra)
                    yield {**_result(name, fault, times, tokens), "wall_s": round(time.monotonic() - t0, 1)}
        finally:
            if cluster is not None:
                cluster.close()


if __name__ == "__main__":
    import sys as _sys

    from bench import help_or_continue

    help_or_continue("bench.failover_takeover", __doc__, _sys.argv[1:], '')
    for r in main():
        print(r)
