"""The standby's audit of the active: the pure core (bridge/audit.py) on plain calls, then the
pipeline shell feeding it (in-memory ports, a fake clock: no sleeps)."""

from __future__ import annotations

from pathlib import Path

from bridge.audit import Audit, AuditConfig
from bridge.metrics import V1_TO_V2, V2_TO_V1
from tests.bridge.test_pipeline import env, make, wmsg
from tests.helpers.clock import FakeClock
from tests.helpers.metrics import metric_value

DIRS = (V1_TO_V2, V2_TO_V1)


def test_met_and_missed_are_checked_per_direction() -> None:
    a = Audit(AuditConfig(deadline_s=10), DIRS)
    a.expect(b"k1", from_v1=True, now=0)
    a.expect(b"k2", from_v1=True, now=1)
    a.expect(b"k3", from_v1=False, now=2)
    assert a.seen(b"k1", from_v1=True) is None  # a re-offer on the same side meets nothing
    assert a.seen(b"k1", from_v1=False) == V1_TO_V2  # the translation on v2
    assert a.seen(b"k3", from_v1=True) == V2_TO_V1
    assert a.seen(b"k3", from_v1=True) is None  # met once only
    assert a.sweep(10.5) == []  # k2 is due at 11
    (miss,) = a.sweep(11)
    assert (miss.key, miss.direction, miss.seen_at) == (b"k2", V1_TO_V2, 1)
    assert a.checked == {V1_TO_V2: 2, V2_TO_V1: 1} and a.missed == {V1_TO_V2: 1, V2_TO_V1: 0}
    assert a.ratio() == 2 / 3 and list(a.recent) == [miss] and len(a) == 0


def test_no_checks_no_ratio_and_reset_is_not_counted() -> None:
    a = Audit(AuditConfig(deadline_s=1), DIRS)
    assert a.ratio() is None
    a.expect(b"k", from_v1=False, now=0)
    a.expect(b"k", from_v1=False, now=0.5)  # the same key again: one expectation, the first deadline
    assert a.reset() == 1 and a.sweep(100) == [] and a.ratio() is None


def test_memory_is_bounded() -> None:
    a = Audit(AuditConfig(deadline_s=1, max_outstanding=3, recent=2), DIRS)
    for i in range(10):
        a.expect(bytes([i]), from_v1=True, now=0)
    assert len(a) == 3 and a.evicted == 7  # evictions are not misses: nothing was observed
    assert [m.key for m in a.sweep(5)] == [b"\x07", b"\x08", b"\x09"]
    assert [m.key for m in a.recent] == [b"\x08", b"\x09"] and a.missed[V1_TO_V2] == 3


def checked(p: object, d: str) -> float:
    return metric_value(p.metrics.audit_checked, d)  # type: ignore[attr-defined]


def missed(p: object, d: str) -> float:
    return metric_value(p.metrics.audit_missed, d)  # type: ignore[attr-defined]


async def test_standby_pipeline_audits_what_the_active_bridged(tmp_path: Path) -> None:
    clock = FakeClock()
    s, _, _, gate = await make(tmp_path, "s", active=False, clock=clock)
    s._auditing = lambda: True  # another instance is active
    active, a1, a2, _ = await make(tmp_path, "a", clock=clock)
    bridged, lost, m = env(b"bridged"), env(b"lost by the active"), wmsg(b"from v2")
    for e in (bridged, lost):
        await s.on_envelope(e)
    await s.on_message(m)
    await active.on_envelope(bridged)
    await active.on_message(m)
    await s.on_message(a2.published[0][1])  # the translations reach the standby
    await s.on_envelope(a1.posted[0])
    assert checked(s, V1_TO_V2) == 1 and checked(s, V2_TO_V1) == 1
    s.audit_sweep(clock.advance(5))
    assert missed(s, V1_TO_V2) == 0
    s.audit_sweep(clock.advance(6))  # past the 10 s deadline: "lost" was never bridged
    assert missed(s, V1_TO_V2) == 1 and checked(s, V1_TO_V2) == 2 and missed(s, V2_TO_V1) == 0
    assert s.audit.ratio() == 2 / 3
    # once we are active (or no one is), open expectations are forgotten, not counted
    await s.on_envelope(env(b"open at takeover"))
    gate.active = True
    s.audit_sweep(clock.advance(20))
    assert missed(s, V1_TO_V2) == 1 and len(s.audit) == 0


async def test_no_audit_without_an_active_elsewhere(tmp_path: Path) -> None:
    clock = FakeClock()
    s, _, _, _ = await make(tmp_path, "s", active=False, clock=clock)  # auditing=None: no failover
    await s.on_envelope(env(b"x"))
    s.audit_sweep(clock.advance(60))
    assert len(s.audit) == 0 and checked(s, V1_TO_V2) == 0 and missed(s, V1_TO_V2) == 0


async def test_test_only_drop_hook_skips_every_nth_publish(tmp_path: Path) -> None:
    a, _, a2, _ = await make(tmp_path, "a", test_only_drop_every=3)
    for i in range(7):
        await a.on_envelope(env(b"m%d" % i))
    assert [m.payload for _, m in a2.published] == [b"m0", b"m1", b"m3", b"m4", b"m6"]


def test_status_cells() -> None:
    from bridge.app.admin import audit_cell, health_cell

    assert audit_cell(None) == "-" and audit_cell({"ratio": None}) == "-"
    assert audit_cell({"ratio": 0.9995, "checked": {V1_TO_V2: 1500, V2_TO_V1: 500}}) == "99.95% of 2000"
    assert health_cell({"v1": True, "v2": True}) == "ok" and health_cell({"v1": False, "v2": True}) == "no v1"
    assert health_cell({"v1": False, "v2": False}) == "no v1+v2" and health_cell(None) == "-"
