"""One way to wait in tests: poll a condition until it holds, with a generous deadline.

The wait returns as soon as the condition holds, so a long deadline costs nothing on a fast machine
and keeps a loaded 2-core CI machine from failing a test that is only slow.  On expiry the failure
says what was awaited (never a bare ``TooSlowError``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import trio

__all__ = ["poll_until", "wait_until"]

T = TypeVar("T")


async def wait_until(pred: Callable[[], object], timeout: float = 30.0, what: str = "the condition", *,
                     interval: float = 0.05) -> None:
    """Poll ``pred`` every ``interval`` s on the trio clock until it is truthy; fail after ``timeout`` s."""
    try:
        with trio.fail_after(timeout):
            while not pred():
                await trio.sleep(interval)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def poll_until(get: Callable[[], T | None], pred: Callable[[T], object], timeout: float = 30.0,
               what: str = "the condition", *, interval: float = 0.1) -> T:
    """Blocking form for worker threads and plain functions: return the first ``get()`` that is not
    None and satisfies ``pred``; fail after ``timeout`` s with the last value seen."""
    end = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < end:
        last = get()
        if last is not None and pred(last):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")
