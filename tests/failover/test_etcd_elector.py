"""etcd elector against real etcd members (single member and a 3-member cluster) and real
candidate processes: crash, graceful stop, zombie, etcd down, etcd frozen, raft leader loss."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from failover.elector import Elector
from failover.errors import FailoverSetupError
from failover.etcd.elector import EtcdElector
from failover.etcd.wire import fenced_txn
from failover.lease import LeaseTiming
from failover.sqlite_backend import SqliteElector
from failover.url import parse_failover_url
from tests.helpers.candidates import (
    STEP_DOWNS,
    Candidate,
    assert_one_active,
    spawn_pair,
    takeover_drill,
    zombie_drill,
)
from tests.helpers.etcd import EtcdCluster, etcd_available
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.skipif(not etcd_available(), reason="needs the etcd binary (scripts/setup.sh)")

TTL = 3
FAST = LeaseTiming(ttl=TTL, renew_interval=0.5, rpc_timeout=0.5, safety=0.5)
KW: dict[str, Any] = {"ttl": float(TTL), "renew": 0.5, "rpc_timeout": 0.5, "safety": 0.5}
_names = itertools.count()


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster.start(tmp_path_factory.mktemp("etcd1"), 1)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster.start(tmp_path, 1)
    try:
        yield cluster
    finally:
        cluster.close()


def election(cluster: EtcdCluster) -> str:
    """A fresh election name per test on the shared member."""
    return f"{cluster.url}/t{next(_names)}-{time.monotonic_ns()}"


def test_parse_failover_url(tmp_path: Path) -> None:
    assert parse_failover_url("none", identity="A", data_dir=tmp_path, ttl=10) is None
    e = parse_failover_url(None, identity="A", data_dir=tmp_path, ttl=10)
    assert isinstance(e, SqliteElector) and e.path == str(tmp_path / "failover.sqlite3")
    e = parse_failover_url(f"sqlite:{tmp_path}/x.db", identity="A", data_dir=tmp_path, ttl=10)
    assert isinstance(e, SqliteElector) and e.path.endswith("x.db")
    e = parse_failover_url("etcd://127.0.0.1:1,127.0.0.1:2/b1", identity="A", data_dir=tmp_path, ttl=10)
    assert isinstance(e, EtcdElector) and e.client.endpoints == ["127.0.0.1:1", "127.0.0.1:2"] and e.name == "b1"
    assert isinstance(e, Elector)
    with pytest.raises(FailoverSetupError, match="whole seconds"):
        parse_failover_url("etcd://127.0.0.1:1", identity="A", data_dir=tmp_path, ttl=2.5)
    with pytest.raises(FailoverSetupError, match=r"^url: "):
        parse_failover_url("zookeeper://x", identity="A", data_dir=tmp_path, ttl=10)


async def test_no_member_reachable_means_never_leader() -> None:
    e = EtcdElector(["127.0.0.1:1", "127.0.0.1:2"], "A", timing=FAST)
    async with trio.open_nursery() as n:
        await n.start(e.run)
        await trio.sleep(1.0)
        assert not e.is_leader() and e.fencing_token is None
        n.cancel_scope.cancel()


async def test_campaign_fencing_resign(etcd1: EtcdCluster) -> None:
    endpoints, name = etcd1.endpoints, f"inproc{time.monotonic_ns()}"
    a = EtcdElector(endpoints, "A", name=name, timing=FAST)
    b = EtcdElector(endpoints, "B", name=name, timing=FAST)
    changes = b.observe()
    async with trio.open_nursery() as n:
        await n.start(a.run)
        with trio.fail_after(5):
            term = await a.campaign()
        await n.start(b.run)
        await trio.sleep(1.5)  # several keepalives: the lease lives past one renew interval
        assert a.is_leader() and not b.is_leader() and b.leader == "A"
        assert await a.fenced(term.token)
        await a.resign()  # graceful: delete + revoke, the standby's watch fires at once
        assert term.lost.is_set()
        with trio.fail_after(2):
            t2 = await b.campaign()
        assert t2.token > term.token and b.leader == "B"
        assert not await a.fenced(term.token)  # the old term is fenced off
        assert await b.fenced(t2.token)
        n.cancel_scope.cancel()
    got = []
    while True:
        try:
            got.append(changes.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    assert [c.reason for c in got] == ["elected", "resign"] and got[0].token == t2.token


async def test_revoked_lease_is_fenced_and_the_active_steps_down(etcd1: EtcdCluster) -> None:
    a = EtcdElector(etcd1.endpoints, "A", name=f"revoke{time.monotonic_ns()}", timing=FAST)
    changes = a.observe()
    async with trio.open_nursery() as n:
        await n.start(a.run)
        with trio.fail_after(5):
            term = await a.campaign()
        key, lease = a.key, a.lease
        assert key is not None and lease is not None
        member = etcd1.members[0]
        assert member.post("/v3/kv/txn", fenced_txn(key, term.token, [])).get("succeeded")
        member.post("/v3/lease/revoke", {"ID": str(lease)})  # an operator, or the server expiring it
        assert not member.post("/v3/kv/txn", fenced_txn(key, term.token, [])).get("succeeded")
        with trio.fail_after(3):
            await a.wait_lost()
        assert (await changes.receive()).reason == "elected"
        assert (await changes.receive()).reason == "lost"  # seen by the own-key watch, before any deadline
        with trio.fail_after(5):
            t2 = await a.campaign()  # re-campaigns with a new lease and a higher token
        assert t2.token > term.token
        n.cancel_scope.cancel()


@pytest.mark.drill
async def test_sigkill_of_the_active(nursery: trio.Nursery, etcd1: EtcdCluster) -> None:
    tokens = await takeover_drill(nursery, election(etcd1), signal.SIGKILL, **KW)
    assert tokens == sorted(set(tokens))


@pytest.mark.drill
async def test_sigterm_resigns_fast(nursery: trio.Nursery, etcd1: EtcdCluster) -> None:
    tokens = await takeover_drill(nursery, election(etcd1), signal.SIGTERM, **KW)
    assert tokens == sorted(set(tokens))


@pytest.mark.drill
async def test_sigstop_zombie_steps_down(nursery: trio.Nursery, etcd1: EtcdCluster) -> None:
    tokens = await zombie_drill(nursery, election(etcd1), **KW)
    assert tokens == sorted(set(tokens))


async def _pair(nursery: trio.Nursery, url: str, **extra: Any) -> tuple[Candidate, Candidate]:
    return await spawn_pair(nursery, url, **KW, **extra)


@pytest.mark.drill
async def test_etcd_killed_and_restarted(nursery: trio.Nursery, own_etcd: EtcdCluster) -> None:
    a, b = await _pair(nursery, own_etcd.url)
    member = own_etcd.members[0]
    try:
        old = int(a.token or 0)
        for r in range(2):
            t_kill = time.monotonic()
            member.kill()
            await wait_until(lambda: not (a.leader or b.leader), 5, f"round {r}: the active to step down")
            await trio.sleep(TTL + 0.5 - (time.monotonic() - t_kill))
            for c in (a, b):  # nobody active during the outage
                assert not c.leader and not [e for e in c.since(t_kill) if e["event"] == "elected"]
            await trio.to_thread.run_sync(own_etcd.restart, member)
            await wait_until(lambda: a.leader or b.leader, 20, f"round {r}: a leader after the restart")
            await trio.sleep(0.5)
            active = assert_one_active([a, b])
            assert active.token is not None and active.token > old
            old = active.token
    finally:
        a.stop()
        b.stop()


@pytest.mark.drill
async def test_etcd_frozen_the_active_steps_down_before_the_server_could_expire(
        nursery: trio.Nursery, own_etcd: EtcdCluster) -> None:
    a, b = await _pair(nursery, own_etcd.url, extra=("--trace-renewals",))
    member = own_etcd.members[0]
    try:
        old = int(a.token or 0)
        for r in range(2):
            active = a if a.leader else b
            t_stop = time.monotonic()
            member.stop()
            await wait_until(lambda: not (a.leader or b.leader), 5, f"round {r}: the active to step down")
            down = next(e for e in active.since(t_stop) if e["event"] == "state" and not e["leader"])
            deadline = max(e["deadline"] for e in active.events if e["event"] == "renewed" and e["t"] < down["t"])
            # deadline = send time of the last successful keepalive + TTL: the server cannot expire
            # the lease earlier, and the active stopped acting before it.
            assert down["t"] < deadline
            await trio.sleep(TTL + 0.5 - (time.monotonic() - t_stop))
            for c in (a, b):
                assert not c.leader and not [e for e in c.since(t_stop) if e["event"] == "elected"]
            member.cont()
            await wait_until(lambda: a.leader or b.leader, 20, f"round {r}: a leader after SIGCONT")
            await trio.sleep(0.5)
            now = assert_one_active([a, b])
            assert now.token is not None and now.token > old
            old = now.token
    finally:
        a.stop()
        b.stop()


@pytest.mark.drill
async def test_three_members_losing_the_raft_leader_does_not_flap(nursery: trio.Nursery, tmp_path: Path) -> None:
    cluster = await trio.to_thread.run_sync(lambda: EtcdCluster.start(tmp_path, 3, election_timeout_ms=500))
    try:
        a, b = await _pair(nursery, cluster.url)
        token = a.token
        for _ in range(2):
            raft = None
            with trio.fail_after(10):
                while raft is None:
                    raft = await trio.to_thread.run_sync(cluster.raft_leader)
            t_kill = time.monotonic()
            raft.kill()
            await trio.sleep(TTL + 1.0)
            assert a.leader and a.token == token, a.since(t_kill)  # no flap
            assert not [e for e in a.since(t_kill) if e["event"] in STEP_DOWNS]
            assert not b.leader
            await trio.to_thread.run_sync(cluster.restart, raft)
        a.stop()
        b.stop()
    finally:
        cluster.close()
