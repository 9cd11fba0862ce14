"""The shared elector core (terms, tokens, watchdog, observe) and the startup timing invariant."""

from __future__ import annotations

import time

import pytest
import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import ConfigErrors, load_config
from failover.elector import ElectorCore, StepDown
from failover.errors import FailoverError, FailoverSetupError
from failover.lease import LeaseTiming, timing_for
from failover.metrics import FailoverMetrics
from tests.helpers.clock import FakeClock


def test_timing_for_derives_and_checks() -> None:
    assert timing_for(None, 10) == LeaseTiming.for_ttl(10)
    assert timing_for("etcd://h:1", 10) == LeaseTiming.for_etcd(10)
    assert timing_for("sqlite:x", 10, rpc_timeout=2).rpc_timeout == 2
    with pytest.raises(FailoverSetupError, match="must be < TTL"):
        timing_for("etcd://h:1", 3, renew_interval=1, rpc_timeout=1)
    with pytest.raises(FailoverSetupError, match="whole seconds"):
        timing_for("etcd://h:1", 2.5)


def test_config_rejects_a_timing_that_breaks_the_invariant() -> None:
    env = {"WAKU_BRIDGE_FAILOVER_TTL": "3", "WAKU_BRIDGE_FAILOVER_RPC_TIMEOUT": "1.5"}
    with pytest.raises(ConfigErrors, match="must be < TTL"):
        load_config(env=env)
    with pytest.raises(ConfigErrors, match="whole seconds"):
        load_config(env={"WAKU_BRIDGE_FAILOVER_BACKEND": "etcd://127.0.0.1:2379", "WAKU_BRIDGE_FAILOVER_TTL": "2.5"})
    ok = load_config(env={"WAKU_BRIDGE_FAILOVER_BACKEND": "etcd://127.0.0.1:2379", "WAKU_BRIDGE_FAILOVER_TTL": "10",
                          "WAKU_BRIDGE_FAILOVER_SAFETY": "2"})
    assert ok.failover.ttl == 10 and ok.failover.safety == 2 and ok.failover.renew_interval is None


def test_is_leader_only_before_deadline_minus_safety() -> None:
    clock = FakeClock(100.0)
    core = ElectorCore("A", safety=0.5, clock=clock)
    changes = core.observe()
    assert not core.is_leader() and core.deadline_margin() == 0
    core._elected(7, sent=100.0, ttl=3.0)
    assert core.is_leader() and core.is_active() and core.deadline_margin() == 2.5
    clock.now = 102.4
    assert core.is_leader()
    core._renewed(sent=99.0, ttl=3.0)  # a late reply to an older request does not extend the term
    clock.now = 102.5
    assert not core.is_leader() and core.lapsed()
    core._renewed(sent=102.0, ttl=3.0)
    assert core.is_leader()
    core._step_down(StepDown.LOST, "test")
    assert not core.is_leader() and core.fencing_token is None and core._term is not None and core._term.lost.is_set()
    core._step_down(StepDown.LOST, "twice")  # idempotent
    core._elected(8, sent=clock.now, ttl=3.0)
    with pytest.raises(FailoverError, match="still held"):  # one term at a time
        core._elected(9, sent=clock.now, ttl=3.0)
    got = [changes.receive_nowait() for _ in range(3)]
    assert [(c.reason, c.active, c.token) for c in got] == [("elected", True, 7), ("lost", False, None),
                                                           ("elected", True, 8)]


def test_a_token_going_backwards_is_counted() -> None:
    reg = CollectorRegistry()
    core = ElectorCore("A", safety=0.5, metrics=FailoverMetrics(reg, "A"))
    core._elected(8, sent=time.monotonic(), ttl=3.0)
    core._step_down(StepDown.LOST)
    core._elected(3, sent=time.monotonic(), ttl=3.0)  # the store was reset: lead, but loudly
    assert core.fencing_token == 3
    assert reg.get_sample_value("waku_bridge_failover_errors_total", {"kind": "token_regressed"}) == 1


async def test_watchdog_steps_down_when_renewals_stop() -> None:
    core = ElectorCore("A", safety=0.1)
    lapsed = []
    async with trio.open_nursery() as n:
        n.start_soon(core._watchdog, lambda: lapsed.append(True))
        core._elected(1, sent=time.monotonic(), ttl=0.4)
        with trio.fail_after(2):
            await core.wait_lost()
        n.cancel_scope.cancel()
    assert lapsed == [True] and not core.is_leader()


async def test_campaign_returns_the_term_once_elected() -> None:
    core = ElectorCore("A", safety=0.1)
    async with trio.open_nursery() as n:
        async def elect_later() -> None:
            await trio.sleep(0.05)
            core._elected(3, sent=time.monotonic(), ttl=5)
        n.start_soon(elect_later)
        with trio.fail_after(2):
            term = await core.campaign()
    assert term.token == 3 and term.identity == "A" and not term.lost.is_set()
