"""A simulated week of migration traffic through the hourly aggregates writer (report tests)."""

from __future__ import annotations

from pathlib import Path

import trio

from bridge.aggregates import HOUR, AggregatesWriter
from bridge.metrics import V1_TO_V2, V2_TO_V1
from bridge.report import DAY
from tests.helpers.clock import FakeClock

__all__ = ["CHAT", "DAY0", "LEGACY", "NEW", "plan", "simulate"]

# 2027-01-10 00:00:00 UTC
DAY0 = 1_799_539_200
assert DAY0 % DAY == 0

CHAT = "/waku/1/0x00000001/rfc26"  # migrates: v1-only, then mixed, then v2-only
LEGACY = "/waku/1/0x00000002/rfc26"  # stays on v1
NEW = "/waku/1/0x00000003/rfc26"  # born on v2


def plan(day: int) -> list[tuple[str, str, int]]:
    """(direction, topic, messages) for each hour of simulated ``day`` (0-based); 100 B each."""
    out = [(V1_TO_V2, LEGACY, 2)]
    if day < 2:
        out.append((V1_TO_V2, CHAT, 3))
    elif day < 4:
        out += [(V1_TO_V2, CHAT, 1), (V2_TO_V1, CHAT, 2)]
    else:
        out.append((V2_TO_V1, CHAT, 3))
    if day >= 3:
        out.append((V2_TO_V1, NEW, 1))
    return out


async def simulate(path: Path, days: int, *, start: int = DAY0, first_day: int = 0,
                   flushes_per_day: int = 4) -> FakeClock:
    """Drive an :class:`AggregatesWriter` as the bridge does (listener + flush) over days
    ``first_day .. first_day + days - 1`` of the plan (day 0 starts at ``start``), restarting it
    every simulated day (the rows of a restarted writer add up)."""
    clock = FakeClock(start)
    for day in range(first_day, first_day + days):
        w = AggregatesWriter(path, flush_interval=3600, clock=clock)
        async with trio.open_nursery() as n:
            await n.start(w.run)
            for hour in range(24):
                clock.now = start + day * DAY + hour * HOUR + 1800
                for direction, topic, count in plan(day):
                    for _ in range(count):
                        w.record(direction, topic, 100, clock.now)
                if (hour + 1) % (24 // flushes_per_day) == 0:
                    await w.flush()
            n.cancel_scope.cancel()  # shutdown flush (shielded) writes what is left
    return clock
