"""PoW mining rate for a 300 B / 10 s TTL envelope at the bridge's targets (0.002 and 0.2).

Each envelope has different data (so different hashes); the nonce is the smallest meeting the
target under the STRICT size rule, exactly as the bridge mines v2->v1 posts.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

from v1.waku.pow import mine_smallest_nonce


def run(target: float, n: int = 200, size: int = 300, ttl: int = 10) -> dict[str, Any]:
    times, nonces = [], []
    for _ in range(n):
        data = os.urandom(size)
        t0 = time.perf_counter()
        nonce = mine_smallest_nonce(1_800_000_000, ttl, b"\x1a\x2b\x3c\x4d", data, target)
        times.append(time.perf_counter() - t0)
        assert nonce is not None
        nonces.append(nonce)
    total = sum(times)
    return {"target_pow": target, "payload": size, "ttl": ttl, "envelopes": n,
            "envelopes_per_s": round(n / total, 1), "hashes_per_s": round((sum(nonces) + n) / total),
            "mean_ms": round(1000 * statistics.mean(times), 3),
            "p99_ms": round(1000 * sorted(times)[int(0.99 * n) - 1], 3)}


def main() -> Iterator[dict[str, Any]]:
    yield run(0.002)
    yield run(0.2)
    yield run(2.0, n=50)


if __name__ == "__main__":
    import sys as _sys

    from bench import help_or_continue

    help_or_continue("bench.v1_pow", __doc__, _sys.argv[1:], '')
    for r in main():
        print(r)
