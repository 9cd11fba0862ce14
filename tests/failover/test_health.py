"""Health-aware leadership: the pure rules (failover/health.py) on plain calls, then two SQLite
electors in one process handing the lease over for health (a real lease file)."""

from __future__ import annotations

from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from failover.elector import StepDown
from failover.health import Health, HealthConfig, HealthTracker, PeerHealth, ProbeTracker, SideHealth, Verdict, verdict
from failover.lease import LeaseTiming
from failover.metrics import FailoverMetrics
from failover.sqlite_backend import SqliteElector
from tests.helpers.wait import wait_until

CFG = HealthConfig(unhealthy_after=30, recover_after=5, min_tenure=30)
SICK, WELL = Health(v1=False), Health()


def test_a_side_goes_unhealthy_after_the_timeout_and_recovers_with_hysteresis() -> None:
    s = SideHealth(CFG, now=0)
    assert not s.observe(False, 10)  # never had a peer: not healthy (not handed a lease it cannot serve)
    assert s.observe(True, 11)  # the first peer: healthy at once
    assert s.observe(False, 12) and s.observe(False, 40.9)  # 29.9 s without a peer: still healthy
    assert not s.observe(False, 41)  # 30 s: unhealthy
    assert not s.observe(True, 50) and not s.observe(True, 54.9)  # a peer again, for less than 5 s
    assert not s.observe(False, 55) and not s.observe(True, 56) and not s.observe(True, 60.9)  # a flap restarts it
    assert s.observe(True, 61)  # 5 s with a peer: healthy
    assert s.observe(False, 62)  # one sample without: not yet unhealthy again


def test_tracker_and_health_values() -> None:
    t = HealthTracker(CFG, now=0)
    assert t.observe(1, 1, 1) == Health(True, True) and t.observe(0, 3, 40) == Health(False, True)
    assert not t.health.ok and t.health.as_dict() == {"v1": False, "v2": True, "disk": True}
    assert HealthConfig.for_unhealthy_after(30) == CFG
    assert HealthConfig.for_unhealthy_after(3) == HealthConfig(3, 0.5, 3)


def test_a_silently_cut_side_is_connected_but_not_usable() -> None:
    """A partition that drops packets leaves the connections open (the netns drill b): the side
    counts its peers only while keep-alive pings are answered; the probes fit within the timeout."""
    assert (CFG.probe_interval, CFG.probe_timeout) == (10.0, 10.0)  # nwaku's keep-alive period
    p = ProbeTracker(CFG)
    assert p.observe(0, 0, 0) == 0
    assert p.observe(2, 0, 1) == 2 and p.observe(2, 0, 21) == 2  # new peers: 20 s for the first answer
    assert p.observe(2, 0, 21.1) == 0  # no answer: connected, not usable
    assert p.observe(2, 1, 22) == 2 and p.observe(2, 1, 42) == 2 and p.observe(2, 1, 42.5) == 0
    assert p.observe(0, 1, 43) == 0 and p.observe(1, 1, 44) == 1  # a reconnect starts a new grace
    short = HealthConfig.for_unhealthy_after(4.5)
    assert short.probe_interval + short.probe_timeout < short.unhealthy_after


def test_verdict_rules() -> None:
    healthy_b, sick_b, stale_b = PeerHealth("B", WELL, 1), PeerHealth("B", SICK, 1), PeerHealth("B", WELL, 11)
    v = lambda me, leading, others, tenure=60.0: verdict(me, leading=leading, tenure=tenure,  # noqa: E731
                                                         others=others, ttl=10, config=CFG)
    assert v(WELL, True, [healthy_b]) is Verdict.STAY and v(WELL, False, [healthy_b]) is Verdict.STAY
    assert v(SICK, True, [healthy_b]) is Verdict.RESIGN  # rule 3
    assert v(SICK, True, [healthy_b], tenure=29) is Verdict.STAY  # minimum tenure
    assert v(SICK, False, [healthy_b]) is Verdict.WITHHOLD  # rule 4
    for others in ([], [sick_b], [stale_b]):  # nobody healthier (a stale report is nobody)
        assert v(SICK, True, others) is Verdict.STAY and v(SICK, False, others) is Verdict.STAY
    assert v(Health(v2=False), True, [sick_b, PeerHealth("C", WELL, 0)]) is Verdict.RESIGN


def test_disk_is_healthy_from_the_start_and_follows_failing_writes() -> None:
    t = HealthTracker(CFG, now=0)
    assert t.observe(1, 1, 1).disk  # no write has failed: healthy without any "first peer"
    assert t.observe(1, 1, 20, disk_ok=False).disk and t.observe(1, 1, 30.9, disk_ok=False).disk
    h = t.observe(1, 1, 31, disk_ok=False)  # 30 s of failing writes
    assert not h.disk and not h.ok and h.as_dict() == {"v1": True, "v2": True, "disk": False}
    assert not t.observe(1, 1, 32).disk and t.observe(1, 1, 37).disk  # recover_after of good writes
    full = Health(disk=False)
    assert verdict(full, leading=True, tenure=60, others=[PeerHealth("B", WELL, 1)], ttl=10,
                   config=CFG) is Verdict.RESIGN
    assert verdict(WELL, leading=False, tenure=0, others=[PeerHealth("A", full, 1)], ttl=10,
                   config=CFG) is Verdict.STAY


def test_a_lease_file_of_the_previous_release_gets_the_disk_column(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "lease.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE health (name TEXT NOT NULL, identity TEXT NOT NULL, v1 INTEGER NOT NULL,"
                 " v2 INTEGER NOT NULL, updated_at REAL NOT NULL, boot_id TEXT NOT NULL, PRIMARY KEY (name, identity))")
    conn.execute("INSERT INTO health VALUES ('bridge', 'OLD', 1, 1, 0, 'b')")
    conn.commit()
    conn.close()
    e = SqliteElector(db, "A", timing=FAST)
    c = e._connect(str(db))
    try:
        assert c.execute("SELECT identity, disk FROM health").fetchall() == [("OLD", 1)]  # old rows: disk ok
    finally:
        c.close()


FAST = LeaseTiming(ttl=2.0, renew_interval=0.3, rpc_timeout=0.2, safety=0.3)
QUICK = HealthConfig(unhealthy_after=1.0, recover_after=0.2, min_tenure=1.0)


async def test_sqlite_electors_hand_over_for_health(tmp_path: Path) -> None:
    db = tmp_path / "lease.sqlite3"
    health = {"A": WELL, "B": WELL}
    metrics = FailoverMetrics(CollectorRegistry(), "A")
    a = SqliteElector(db, "A", timing=FAST, metrics=metrics)
    b = SqliteElector(db, "B", timing=FAST)
    a.set_health_source(lambda: health["A"], QUICK)
    b.set_health_source(lambda: health["B"], QUICK)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await a.campaign()
        b_scope = trio.CancelScope()

        async def run_b() -> None:
            with b_scope:
                await b.run()

        n.start_soon(run_b)
        await wait_until(lambda: "A" in b.others_health and "B" in a.others_health, 10, "health rows exchanged")
        assert b.leader == "A" and a.others_health["B"].health == WELL
        health["A"] = SICK  # A's v1 side has failed (its tracker said so)
        await wait_until(b.is_leader, 10, "B to take over from the unhealthy A")
        assert metrics.step_downs.labels(StepDown.UNHEALTHY.value)._value.get() == 1
        # A does not campaign while it is unhealthy and B is healthy, and knows B leads
        await wait_until(lambda: a.withheld and a.leader == "B", 10, "A withholding")
        assert metrics.withheld._value.get() == 1 and metrics.health.labels("v1")._value.get() == 0
        # both unhealthy: health decides nothing, B keeps the lease
        health["B"] = Health(v2=False)
        await wait_until(lambda: not a.withheld, 10, "A no longer withholding")
        assert b.is_leader() and not a.is_leader()
        # B goes away: its report goes stale and A, unhealthy but the only one left, takes over
        b_scope.cancel()
        await wait_until(a.is_leader, 15, "A to take over from the departed B")
        n.cancel_scope.cancel()
