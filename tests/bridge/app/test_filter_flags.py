"""nwaku's filter limit flags reach the FilterService of a running node (waku-v2.md §9, §18)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import ConfigErrors, load_config
from bridge.app.v2service import v2_node_config
from tests.helpers.config import parse_flags
from tests.helpers.net import free_ports
from v2.filter.client import FilterClient
from v2.filter.rpc_codec import FilterStatus
from v2.host import Host, HostConfig
from v2.metadata.protocol import MetadataService
from v2.node import V2Node

PS = "/waku/2/rs/0/0"


def test_defaults_are_nwakus_and_flags_parse() -> None:
    cfg = load_config(None, {}, env={})
    assert (cfg.v2.filter_subscription_timeout, cfg.v2.filter_max_peers_to_serve, cfg.v2.filter_max_criteria) == (
        300, 1000, 1000)
    for group in ("bridge", "v2-node"):
        argv = ["--filter-subscription-timeout", "60", "--filter-max-peers-to-serve", "7", "--filter-max-criteria", "3"]
        cfg = load_config(None, parse_flags(group, argv), env={})
        assert (cfg.v2.filter_subscription_timeout, cfg.v2.filter_max_peers_to_serve,
                cfg.v2.filter_max_criteria) == (60, 7, 3)
    env = {"WAKU_BRIDGE_V2_FILTER_MAX_CRITERIA": "0", "WAKU_BRIDGE_V2_FILTER_SUBSCRIPTION_TIMEOUT": "x"}
    with pytest.raises(ConfigErrors) as err:
        load_config(None, {}, env=env)
    assert {e.key for e in err.value.errors} >= {"v2.filter_max_criteria", "v2.filter_subscription_timeout"}


async def _client(nursery: trio.Nursery) -> tuple[Host, FilterClient]:
    h = Host(HostConfig(secrets.token_bytes(32), "127.0.0.1", free_ports(1)[0], None))
    md = MetadataService(0, (0,), CollectorRegistry())  # the node drops peers without metadata
    h.set_stream_handler(md.protocol_ids[0], md.handle)
    client = FilterClient(h)
    await nursery.start(h.run)
    return h, client


async def test_limits_reach_the_running_filter_service(nursery: trio.Nursery, tmp_path: Path) -> None:
    tcp, ws = free_ports(2)
    argv = ["--filter", "true", "--tcp-port", str(tcp), "--websocket-port", str(ws), "--listen-address",
            "127.0.0.1", "--filter-subscription-timeout", "42", "--filter-max-peers-to-serve", "1",
            "--filter-max-criteria", "2"]
    cfg = load_config(None, parse_flags("v2-node", argv), env={})
    node_cfg = v2_node_config(cfg, secrets.token_bytes(32).hex(), data_dir=tmp_path)
    node = V2Node(node_cfg, CollectorRegistry())
    assert (node.filter.table.ttl, node.filter.table.max_peers, node.filter.table.max_criteria_per_peer) == (
        42.0, 1, 2)
    await nursery.start(node.run)
    (h1, c1), (h2, c2) = await _client(nursery), await _client(nursery)
    tcp_addr = next(a for a in node.listen_addrs if "/ws" not in a)  # the clients speak TCP only
    for h in (h1, h2):
        await h.connect(tcp_addr)
    too_many = await c1.subscribe(node.peer_id, PS, ["/a/1/x/proto", "/a/1/y/proto", "/a/1/z/proto"])
    assert too_many.status_code == FilterStatus.SERVICE_UNAVAILABLE  # 3 criteria > 2
    assert (await c1.subscribe(node.peer_id, PS, ["/a/1/x/proto", "/a/1/y/proto"])).ok
    second = await c2.subscribe(node.peer_id, PS, ["/a/1/x/proto"])
    assert second.status_code == FilterStatus.SERVICE_UNAVAILABLE  # one subscriber served at most
