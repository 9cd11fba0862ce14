"""The event-loop lag monitor: a blocked loop shows up in the histogram, the 10 s max and the log."""

from __future__ import annotations

import time

import pytest
import trio
from prometheus_client import CollectorRegistry

from bridge.app.looplag import LoopLag
from tests.helpers.metrics import metric_value


def test_windowed_max_and_one_warning_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    m = LoopLag(CollectorRegistry(), window=10.0, warn_at=1.0, warn_every=60.0)
    m.record(100.0, 0.002)
    m.record(101.0, 2.5)
    m.record(102.0, 1.5)
    assert metric_value(m.lag_max) == 2.5
    m.record(112.5, 0.01)  # the lags at t=101 and t=102 left the window
    assert metric_value(m.lag_max) == 0.01
    assert caplog.text.count("event loop ran") == 1  # 1.5 s at t=102 was within the warning interval
    m.record(170.0, 1.2)
    assert caplog.text.count("event loop ran") == 2


async def test_a_blocking_call_is_measured() -> None:
    reg = CollectorRegistry()
    m = LoopLag(reg, interval=0.02)
    async with trio.open_nursery() as n:
        await n.start(m.run)
        await trio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the point: block the loop; the next wake-up is late by this much
        await trio.sleep(0.05)
        n.cancel_scope.cancel()
    assert (reg.get_sample_value("waku_bridge_event_loop_lag_seconds_count") or 0) >= 2
    assert (reg.get_sample_value("waku_bridge_event_loop_lag_seconds_bucket", {"le": "0.1"}) or 0) < \
        (reg.get_sample_value("waku_bridge_event_loop_lag_seconds_count") or 0)
