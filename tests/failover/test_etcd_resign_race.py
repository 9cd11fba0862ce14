"""A resign while the etcd elector leads: ``resign()`` abandons the election key while the
session's own-key loop still runs (health's resign comes from a task of the same session).  Found
by the slow-path partition drill (tests/drills/netns/): the loop then asserted on the missing key
and the bridge process died.  The session must end, and only the session."""

from __future__ import annotations

import trio
import trio.testing

from failover.elector import StepDown
from failover.etcd.elector import EtcdElector, _SessionOver
from failover.etcd.wire import EtcdUnavailable, KeyValue
from failover.lease import LeaseTiming

FAST = LeaseTiming(ttl=3, renew_interval=0.5, rpc_timeout=0.5, safety=0.5)


async def test_the_key_abandoned_under_the_leader_loop_ends_the_session(
        autojump_clock: trio.testing.MockClock) -> None:
    e = EtcdElector(["127.0.0.1:9"], "A", timing=FAST)  # never dialled: the RPCs are stubbed
    e.key = b"/bridge-election/bridge/1"

    async def range_prefix() -> tuple[list[KeyValue], int]:
        return [KeyValue(b"/bridge-election/bridge/1", b"A", 5, 5, 1)], 10

    async def watch_breaks(key: bytes, start_revision: int, *, limit: float) -> bool:
        await trio.sleep(0.1)
        raise EtcdUnavailable("watch stream ended")  # the slow path's resets do this every few s

    e._range_prefix = range_prefix  # type: ignore[method-assign]
    e._watch_for_delete = watch_breaks  # type: ignore[method-assign]
    outcome: list[BaseException] = []

    async def lead() -> None:
        try:
            await e._lead(5)
        except _SessionOver as over:
            outcome.append(over)

    async with trio.open_nursery() as n:
        n.start_soon(lead)
        await trio.sleep(1.0)  # a few watch breaks and re-checks
        e.key = None  # what resign() -> _abandon() does first, before any await
    assert len(outcome) == 1 and isinstance(outcome[0], _SessionOver)
    assert outcome[0].reason is StepDown.RESIGN


async def test_resign_stops_the_session_before_it_abandons_the_key(autojump_clock: trio.testing.MockClock) -> None:
    e = EtcdElector(["127.0.0.1:9"], "A", timing=FAST)
    order: list[str] = []
    with trio.CancelScope() as scope:
        e._session_scope = scope

        async def abandon() -> None:
            order.append("abandon" if scope.cancel_called else "abandon-before-cancel")

        e._abandon = abandon  # type: ignore[method-assign]
        await e.resign()
    assert order == ["abandon"]
