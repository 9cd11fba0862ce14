"""The pure token bucket behind the lightpush rate limit."""

from __future__ import annotations

import pytest

from v2.lightpush.ratelimit import TokenBucket


def test_burst_then_refill() -> None:
    b = TokenBucket(3, 1.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(0.2)  # 0.6 tokens
    assert b.take(0.4)  # 1.2 tokens
    assert [b.take(10.0) for _ in range(4)] == [True, True, True, False]  # capped at the volume


def test_clock_stepping_back_never_adds_tokens() -> None:
    b = TokenBucket(1, 10.0)
    assert b.take(100.0)
    assert not b.take(50.0)
    assert not b.take(100.0)
    assert b.take(110.0)


def test_invalid() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0)
