"""SQLite lease elector: rules, timing invariant, and real processes sharing one lease file."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from failover.errors import FailoverSetupError
from failover.lease import LeaseRow, LeaseTiming, decide
from failover.sqlite_backend import SqliteElector
from tests.helpers.candidates import Takeover, takeover_drill, zombie_drill

FAST = LeaseTiming(ttl=2.0, renew_interval=0.3, rpc_timeout=0.2, safety=0.3)
TTL3: dict[str, Any] = {"ttl": 3.0, "renew": 0.5, "rpc_timeout": 0.5, "safety": 0.5}


def test_decide_rules() -> None:
    assert decide(None, "A", None, 10, "b") == ("take", LeaseRow("A", 1, 0.0, "b"))
    held = LeaseRow("A", 3, 20.0, "b", locked=True)
    assert decide(held, "A", 3, 10, "b")[0] == "renew"
    assert decide(held, "B", None, 10, "b") == ("wait", None)
    assert decide(held, "B", None, 21, "b")[1] == LeaseRow("B", 4, 0.0, "b")  # expired: epoch bumps
    assert decide(held, "B", None, 10, "other-boot")[0] == "take"  # a reboot frees the lease
    assert decide(held, "B", None, 10, "b", have_flock=True)[0] == "take"  # the holder's flock is gone
    assert decide(held, "A", 2, 10, "b")[0] == "wait"  # a stale term is not a renew
    assert decide(held, "A", None, 10, "b", have_flock=True)[0] == "take"  # restarted self, old self dead


def test_flock_proves_nothing_about_a_holder_that_never_had_it() -> None:
    # B took over by expiry while the stopped zombie A still held the flock: A holding (or any
    # standby getting) the flock says nothing about B.
    by_expiry = LeaseRow("B", 4, 20.0, "b", locked=False)
    assert decide(by_expiry, "A", None, 10, "b", have_flock=True) == ("wait", None)
    assert decide(by_expiry, "A", 3, 10, "b", have_flock=True) == ("wait", None)


def test_a_lapsed_term_is_never_renewed() -> None:
    mine = LeaseRow("A", 3, 9.0, "b", locked=True)
    assert decide(mine, "A", 3, 10, "b") == ("take", LeaseRow("A", 4, 0.0, "b"))  # new epoch


def test_timing_invariant() -> None:
    LeaseTiming.for_ttl(10).check()
    LeaseTiming.for_ttl(3).check()
    with pytest.raises(FailoverSetupError, match="must be < TTL"):
        LeaseTiming(ttl=2, renew_interval=1.5, rpc_timeout=0.5, safety=0.5).check()
    with pytest.raises(FailoverSetupError, match=r"^safety: "):
        LeaseTiming(ttl=2, renew_interval=0.5, rpc_timeout=0.1, safety=0).check()
    with pytest.raises(FailoverSetupError, match="must be < TTL"):
        SqliteElector("unused.sqlite3", "A", timing=LeaseTiming(ttl=3, renew_interval=1, rpc_timeout=1, safety=0.5))


async def test_one_leader_resign_and_fencing(tmp_path: Path) -> None:
    db = tmp_path / "lease.sqlite3"
    a, b = SqliteElector(db, "A", timing=FAST), SqliteElector(db, "B", timing=FAST)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        term = await a.campaign()
        await n.start(b.run)
        await trio.sleep(0.5)
        assert a.is_leader() and not b.is_leader() and b.leader == "A"
        assert a.fenced(term.token, lambda c: None)
        await a.resign()  # graceful: A sits out one TTL, B takes over
        assert term.lost.is_set() and not a.is_leader()
        with trio.fail_after(3):
            t2 = await b.campaign()
        assert t2.token > term.token
        assert not a.fenced(term.token, lambda c: None)  # the old term is fenced off
        assert b.fenced(t2.token, lambda c: None)
        n.cancel_scope.cancel()
    assert not a.is_leader() and not b.is_leader()


async def test_upgrades_a_lease_file_without_the_locked_column(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT, epoch INTEGER NOT NULL,"
                  " expires_at REAL NOT NULL, boot_id TEXT NOT NULL)")
        c.execute("INSERT INTO leases VALUES ('bridge', NULL, 7, 0, 'x')")
    a = SqliteElector(db, "A", timing=FAST)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        with trio.fail_after(3):
            assert (await a.campaign()).token == 8
        n.cancel_scope.cancel()


@pytest.mark.drill
async def test_sigkill_is_replaced_in_milliseconds_via_flock(nursery: trio.Nursery, tmp_path: Path) -> None:
    record: list[Takeover] = []
    tokens = await takeover_drill(nursery, f"sqlite:{tmp_path / 'lease.sqlite3'}", signal.SIGKILL,
                                  extra=("--trace-renewals",), record=record, **TTL3)
    assert tokens == sorted(set(tokens)) and len(record) == 2
    for t in record:
        # The fast path, not expiry: the heir was elected before the victim's lease could expire.
        deadline = max(e["deadline"] for e in t.victim.events if e["event"] == "renewed")
        assert t.elected < deadline - TTL3["safety"]


@pytest.mark.drill
async def test_sigkill_without_flock_waits_for_expiry(nursery: trio.Nursery, tmp_path: Path) -> None:
    tokens = await takeover_drill(nursery, f"sqlite:{tmp_path / 'lease.sqlite3'}", signal.SIGKILL,
                                  extra=("--no-flock",), **TTL3)
    assert tokens == sorted(set(tokens))


@pytest.mark.drill
async def test_sigterm_resigns_and_the_standby_takes_over(nursery: trio.Nursery, tmp_path: Path) -> None:
    tokens = await takeover_drill(nursery, f"sqlite:{tmp_path / 'lease.sqlite3'}", signal.SIGTERM, **TTL3)
    assert tokens == sorted(set(tokens))


@pytest.mark.drill
async def test_sigstop_zombie_steps_down_and_is_fenced(nursery: trio.Nursery, tmp_path: Path) -> None:
    db = tmp_path / "lease.sqlite3"
    tokens = await zombie_drill(nursery, f"sqlite:{db}", after_renewal=True, extra=("--trace-renewals",), **TTL3)
    assert tokens == sorted(set(tokens))
    probe = SqliteElector(db, "probe", timing=FAST)
    assert not any(probe.fenced(t, lambda c: None) for t in tokens[:-1])  # every zombie term is fenced off


rows = st.one_of(st.none(), st.builds(LeaseRow, st.sampled_from([None, "A", "B"]), st.integers(1, 5),
                                      st.floats(0, 20), st.sampled_from(["b", "old"]), st.booleans()))


@given(rows, st.sampled_from(["A", "B"]), st.one_of(st.none(), st.integers(1, 5)), st.floats(0, 20), st.booleans())
def test_decide_never_takes_a_live_lease_and_always_bumps_the_epoch(row: LeaseRow | None, me: str, mine: int | None,
                                                                    now: float, flock: bool) -> None:
    outcome, new = decide(row, me, mine, now, "b", have_flock=flock)
    if row is None:
        assert outcome == "take" and new is not None and new.epoch == 1
        return
    live_other = row.holder not in (None, me) and row.expires_at >= now and row.boot_id == "b"
    if outcome == "take":
        assert new is not None and new.epoch == row.epoch + 1 and new.holder == me
        if live_other:
            assert flock and row.locked  # only the dead holder's released flock may cut a lease short
    elif outcome == "renew":
        assert row.holder == me and mine == row.epoch and row.expires_at >= now and new == row
    else:
        assert new is None and (live_other or (row.holder == me and row.expires_at >= now))
