"""The connection manager over real hosts on 127.0.0.1 (no timing assertions: poll with deadlines)."""
# The tests wait on conditions with deadlines; none asserts how long anything took.

from __future__ import annotations

import contextlib
import functools
import random
import secrets

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.dns_server import serve, zone_of
from tests.helpers.net import LOOPBACK, free_ports
from tests.helpers.wait import wait_until
from v2.enr.dns import make_tree, make_txt_lookup
from v2.enr.enr import Enr, Waku2
from v2.host import DialError, Host, HostConfig
from v2.peer_exchange.client import PeerExchangeClient
from v2.peer_exchange.protocol import PeerExchangeService
from v2.peers.manager import PeerManager
from v2.peers.policy import PolicyConfig
from v2.peers.sources import DnsDiscoverySource, PeerExchangeSource
from v2.protocol_ids import PEER_EXCHANGE

# The safety poll is far longer than any test: connection events and timers drive everything.
SLOW = 600.0
FAST = PolicyConfig(target=3, maximum=5, backoff_initial=0.2, static_backoff_max=0.5, backoff_max=1.0,
                    flap_window=0.0)


class RestartableHost:
    """A host that can be stopped and started again with the same key and port."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.key = secrets.token_bytes(32)
        self.port, = free_ports(1)
        self.nursery = nursery
        self.host: Host | None = None
        self._scope: trio.CancelScope | None = None

    async def start(self) -> Host:
        self.host = Host(HostConfig(self.key, "127.0.0.1", self.port, None))
        scope = trio.CancelScope()

        async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            assert self.host is not None
            with scope:
                await self.host.run(task_status=task_status)

        self._scope = scope
        await self.nursery.start(runner)
        return self.host

    def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    def enr(self) -> Enr:
        return Enr.build(self.key, 1, ip="127.0.0.1", tcp=self.port, waku2=Waku2.RELAY)


async def test_static_peer_kept_across_restart(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    static, other = RestartableHost(nursery), RestartableHost(nursery)
    s_host = await static.start()
    x_host = await other.start()
    me = await RestartableHost(nursery).start()
    manager = PeerManager(me, reg, static_peers=[s_host.listen_addrs[0]], config=FAST, rng=random.Random(7),
                          poll_interval=SLOW, dial_timeout=3)
    await nursery.start(manager.run)
    assert manager.add_discovered([other.enr(), "garbage", "/ip4/1.2.3.4/tcp/1"], "test") == 1
    await wait_until(lambda: {s_host.peer_id, x_host.peer_id} <= set(me.connected_peers()))

    static.stop()
    await wait_until(lambda: s_host.peer_id not in me.connected_peers())
    # While it is down, redials are refused (its listener closed with it) and back off.
    await wait_until(lambda: (reg.get_sample_value("waku_peers_dials_total", {"outcome": "failed"}) or 0) >= 1)
    restarted = await static.start()
    assert restarted.peer_id == s_host.peer_id
    # the manager's own dial brings it back (py-libp2p's auto-connector is off, its negative
    # dial cache cleared: neither helps nor blocks)
    ok_before = reg.get_sample_value("waku_peers_dials_total", {"outcome": "ok"}) or 0
    await wait_until(lambda: (reg.get_sample_value("waku_peers_dials_total", {"outcome": "ok"}) or 0) > ok_before)
    await wait_until(lambda: restarted.peer_id in me.connected_peers())
    assert x_host.peer_id in me.connected_peers()
    assert reg.get_sample_value("waku_peer_store_size") == 2
    assert reg.get_sample_value("waku_discovery_peers_total", {"source": "test", "result": "invalid"}) == 2


async def test_prunes_above_maximum_but_keeps_static(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    me = await RestartableHost(nursery).start()
    static = await RestartableHost(nursery).start()
    others = [await RestartableHost(nursery).start() for _ in range(3)]
    cfg = PolicyConfig(target=1, maximum=2, backoff_initial=0.2, flap_window=0.0)
    manager = PeerManager(me, reg, static_peers=[static.listen_addrs[0]], config=cfg, poll_interval=SLOW)
    for o in others:  # inbound connections the manager did not ask for
        await o.connect(me.listen_addrs[0])
    await nursery.start(manager.run)
    await wait_until(lambda: static.peer_id in me.connected_peers() and len(me.connected_peers()) <= 2)
    await wait_until(lambda: (reg.get_sample_value("waku_peer_manager_pruned_total") or 0) >= 2)
    assert static.peer_id in me.connected_peers()


async def test_peer_exchange_feeds_the_manager(nursery: trio.Nursery) -> None:
    # A bootstrap host serves PX with the ENR of a third host; the manager dials it.
    reg = CollectorRegistry()
    target_peer = RestartableHost(nursery)
    t_host = await target_peer.start()
    boot = await RestartableHost(nursery).start()
    service = PeerExchangeService(CollectorRegistry(), enr_source=lambda: [target_peer.enr()])
    boot.set_stream_handler(PEER_EXCHANGE, service.handle)
    me = await RestartableHost(nursery).start()
    px = PeerExchangeSource(me, PeerExchangeClient(me, reg), interval=0.2)
    manager = PeerManager(me, reg, static_peers=[boot.listen_addrs[0]], config=FAST, poll_interval=SLOW,
                          discovery_sources=[px])
    await nursery.start(manager.run)
    await wait_until(lambda: t_host.peer_id in me.connected_peers())
    assert (reg.get_sample_value("waku_px_peers_received_total") or 0) >= 1
    # once reached, its ENR becomes shareable (the node's PX service can serve manager.enrs)
    await wait_until(lambda: [e.peer_id for e in manager.enrs()] == [t_host.peer_id])


async def test_dns_tree_feeds_the_manager(nursery: trio.Nursery) -> None:
    # An enrtree on a real UDP DNS server lists two live hosts and one dead one.
    reg = CollectorRegistry()
    live = [RestartableHost(nursery) for _ in range(2)]
    hosts = [await h.start() for h in live]
    dead = RestartableHost(nursery)  # never started: its port refuses
    url, zone = make_tree(secrets.token_bytes(32), "nodes.test", [h.enr() for h in [*live, dead]])
    server = await serve(nursery, zone_of(zone, "nodes.test"))
    source = DnsDiscoverySource(url, lookup_txt=make_txt_lookup([LOOPBACK], port=server.port, timeout=3),
                                interval=3600)
    me = await RestartableHost(nursery).start()
    manager = PeerManager(me, reg, config=FAST, poll_interval=SLOW, discovery_sources=[source])
    await nursery.start(manager.run)
    await wait_until(lambda: {h.peer_id for h in hosts} <= set(me.connected_peers()))
    assert reg.get_sample_value("waku_discovery_peers_total", {"source": "dns:nodes.test", "result": "new"}) == 3
    await wait_until(lambda: (reg.get_sample_value("waku_peers_dials_total", {"outcome": "failed"}) or 0) >= 1)


async def test_dns4_addresses_are_resolved(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    peer = RestartableHost(nursery)
    p_host = await peer.start()
    me = await RestartableHost(nursery).start()
    manager = PeerManager(me, reg, config=FAST, poll_interval=SLOW)
    await nursery.start(manager.run)
    only_dns = Enr.build(peer.key, 1, multiaddrs=[f"/dns4/localhost/tcp/{peer.port}"])
    assert manager.add_discovered([only_dns, f"/dns4/no-such-host.invalid/tcp/1/p2p/{p_host.peer_id}"], "t") == 1
    await wait_until(lambda: p_host.peer_id in me.connected_peers())


async def test_newcomers_pruned_first_on_connection_events(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    me = await RestartableHost(nursery).start()
    static = await RestartableHost(nursery).start()
    old, newcomer, relay_peer = [await RestartableHost(nursery).start() for _ in range(3)]
    cfg = PolicyConfig(target=0, maximum=3, flap_window=0.0)
    topic = "/waku/2/rs/0/0"
    manager = PeerManager(me, reg, static_peers=[static.listen_addrs[0]], config=cfg, poll_interval=SLOW,
                          relay_peers=lambda: {topic: [relay_peer.peer_id]})  # its only relay peer
    await nursery.start(manager.run)
    await wait_until(lambda: static.peer_id in me.connected_peers())
    await old.connect(me.listen_addrs[0])
    await wait_until(lambda: reg.get_sample_value("waku_peer_manager_connected", {"source": "inbound"}) == 1)
    await newcomer.connect(me.listen_addrs[0])
    await relay_peer.connect(me.listen_addrs[0])  # 4 > 3: the newest non-relay stranger goes
    await wait_until(lambda: (reg.get_sample_value("waku_peer_manager_pruned_total") or 0) >= 1)
    await wait_until(lambda: newcomer.peer_id not in me.connected_peers())
    assert set(me.connected_peers()) == {static.peer_id, old.peer_id, relay_peer.peer_id}
    assert reg.get_sample_value("waku_peer_manager_pruned_total") == 1


async def test_pruned_peer_is_not_redialled_behind_the_managers_back(nursery: trio.Nursery) -> None:
    # A discovered peer we dialled, then pruned above the maximum, stays disconnected: nothing
    # in py-libp2p (auto-connector, negative cache) dials it again on its own.
    reg = CollectorRegistry()
    me = await RestartableHost(nursery).start()
    dialled = RestartableHost(nursery)
    d_host = await dialled.start()
    manager = PeerManager(me, reg, config=PolicyConfig(target=1, maximum=1, flap_window=0.0), poll_interval=SLOW)
    await nursery.start(manager.run)
    manager.add_discovered([dialled.enr()], "test")
    await wait_until(lambda: d_host.peer_id in me.connected_peers())
    stranger = await RestartableHost(nursery).start()
    with contextlib.suppress(DialError):  # pruned so fast its connect() may see no connection
        await stranger.connect(me.listen_addrs[0])  # newest inbound stranger: pruned first
    await wait_until(lambda: (reg.get_sample_value("waku_peer_manager_pruned_total") or 0) >= 1)
    await wait_until(lambda: stranger.peer_id not in me.connected_peers())
    await me.disconnect(d_host.peer_id)  # as the manager's prune would; now below target
    # the manager redials it (the disconnect event, not the poll, wakes it)
    await wait_until(lambda: reg.get_sample_value("waku_peers_dials_total", {"outcome": "ok"}) == 2)
    await wait_until(lambda: d_host.peer_id in me.connected_peers())
    # the swarm's own redial machinery, run once to completion, dials nobody
    await me.libp2p_host.get_network().auto_connector.maybe_connect()
    assert stranger.peer_id not in me.connected_peers()


async def test_ip_colocation_limit_prunes_the_newest_inbound_from_one_ip(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    me = await RestartableHost(nursery).start()
    cfg = PolicyConfig(target=0, maximum=10, colocation_limit=2, flap_window=0.0)
    manager = PeerManager(me, reg, config=cfg, poll_interval=SLOW)
    await nursery.start(manager.run)
    crowd = []
    for i in range(3):  # three hosts on 127.0.0.7 (they dial from their listen address), one after the other
        h = Host(HostConfig(secrets.token_bytes(32), "127.0.0.7", free_ports(1)[0], None))
        await nursery.start(h.run)
        with contextlib.suppress(DialError):
            await h.connect(me.listen_addrs[0])
        crowd.append(h)
        await wait_until(functools.partial(lambda n: manager.status()["churn"]["connected"] == n, i + 1))
    await wait_until(lambda: reg.get_sample_value("waku_peer_manager_colocation_pruned_total",
                                                  {"direction": "inbound"}) == 1)
    await wait_until(lambda: crowd[2].peer_id not in me.connected_peers())
    assert {crowd[0].peer_id, crowd[1].peer_id} <= set(me.connected_peers())
    await wait_until(lambda: manager.status()["max_peers_per_ip"] == 2)
    await wait_until(lambda: reg.get_sample_value("waku_peer_manager_peers",
                                                  {"source": "inbound", "direction": "inbound"}) == 2)


async def test_bootstrap_latency_once_six_relay_peers_are_connected(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    me = await RestartableHost(nursery).start()
    peers = [await RestartableHost(nursery).start() for _ in range(6)]
    topic = "/waku/2/rs/0/0"
    manager = PeerManager(me, reg, config=PolicyConfig.nwaku(colocation_limit=0), poll_interval=SLOW,
                          relay_peers=lambda: {topic: me.connected_peers()})
    await nursery.start(manager.run)
    for h in peers[:5]:
        await h.connect(me.listen_addrs[0])
    await wait_until(lambda: manager.status()["relay_peers"] == 5)
    assert manager.bootstrap_latency is None
    await peers[5].connect(me.listen_addrs[0])
    await wait_until(lambda: manager.bootstrap_latency is not None)
    assert reg.get_sample_value("waku_peer_manager_bootstrap_latency_seconds_count") == 1
    assert reg.get_sample_value("waku_peer_manager_bootstrap_seconds") == manager.bootstrap_latency
    await wait_until(lambda: manager.status()["churn"] == {"connected": 6, "disconnected": 0})
    st = manager.status()
    assert st["bootstrap_latency_s"] is not None
    assert st["limits"] == {"max_connections": 50, "out_relay_target": 10, "in_relay_target": 20, "service_max": 20,
                            "ip_colocation_limit": 0}
    await me.disconnect(peers[0].peer_id)
    await wait_until(lambda: manager.status()["churn"] == {"connected": 6, "disconnected": 1})
    assert reg.get_sample_value("waku_peer_manager_churn_total", {"event": "disconnected", "direction": "inbound"}) == 1


async def test_graylisted_relay_peer_is_replaced_and_answers_feed_health(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    me = await RestartableHost(nursery).start()
    good, bad = [await RestartableHost(nursery).start() for _ in range(2)]
    scores = {bad.peer_id: -20_000.0, good.peer_id: 5.0}
    manager = PeerManager(me, reg, config=PolicyConfig(target=0, maximum=10, flap_window=0.0), poll_interval=SLOW,
                          relay_scores=lambda: scores)
    await nursery.start(manager.run)
    await good.connect(me.listen_addrs[0])
    with contextlib.suppress(DialError):
        await bad.connect(me.listen_addrs[0])
    await wait_until(lambda: reg.get_sample_value("waku_peer_manager_prunes_total", {"reason": "unhealthy"}) == 1)
    await wait_until(lambda: bad.peer_id not in me.connected_peers())
    assert good.peer_id in me.connected_peers()
    manager.note_answer(good.peer_id, None)
    assert manager.health.score(good.peer_id, now=manager._clock()) < 0
