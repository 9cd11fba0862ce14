"""The one fake clock of the tests: a callable returning a settable ``now`` (injected as ``clock=``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

__all__ = ["FakeClock", "trio_wall_clock"]


class FakeClock:
    """``clock()`` returns ``clock.now``; tests move it by assignment or :meth:`advance`.

    Starts at ``start``, or at the wall clock when omitted (for code that compares against
    wall-clock based fields such as envelope expiries and message timestamps).
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def trio_wall_clock() -> Callable[[], float]:
    """Wall-clock seconds that advance with trio's clock (on a MockClock: virtual time)."""
    offset = time.time() - trio.current_time()
    return lambda: offset + trio.current_time()
