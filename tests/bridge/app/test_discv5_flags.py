"""nwaku's discv5 flags (tools/confutils/cli_args.nim) reach a running node's discv5 service."""

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
from tests.helpers.wait import wait_until
from v2.enr.enr import Enr
from v2.node import V2Node


def test_defaults_flags_and_a_bad_bootnode() -> None:
    cfg = load_config(None, {}, env={})
    assert (cfg.v2.discv5_discovery, cfg.v2.discv5_udp_port, cfg.v2.discv5_bootstrap_nodes,
            cfg.v2.discv5_enr_auto_update) == (False, 9000, (), False)
    enr = Enr.build(secrets.token_bytes(32), 1, ip="127.0.0.1", udp=9000).to_text()
    for group in ("bridge", "v2-node"):
        argv = ["--discv5-discovery", "true", "--discv5-udp-port", "9123", "--discv5-bootstrap-node", enr,
                "--discv5-bootstrap-node", enr, "--discv5-enr-auto-update", "true"]
        cfg = load_config(None, parse_flags(group, argv), env={})
        assert (cfg.v2.discv5_discovery, cfg.v2.discv5_udp_port, cfg.v2.discv5_bootstrap_nodes,
                cfg.v2.discv5_enr_auto_update) == (True, 9123, (enr, enr), True)
    with pytest.raises(ConfigErrors) as err:
        load_config(None, parse_flags("v2-node", ["--discv5-bootstrap-node", "enr:not-a-record"]), env={})
    assert [e.key for e in err.value.errors] == ["v2.discv5_bootstrap_nodes"]


async def test_two_nodes_from_flags_find_each_other(nursery: trio.Nursery, tmp_path: Path) -> None:
    def node(*extra: str) -> V2Node:
        tcp, ws = free_ports(2)
        argv = ["--tcp-port", str(tcp), "--websocket-port", str(ws), "--listen-address", "127.0.0.1",
                "--discv5-discovery", "true", "--discv5-udp-port", "0", *extra]
        cfg = load_config(None, parse_flags("v2-node", argv), env={})
        return V2Node(v2_node_config(cfg, secrets.token_bytes(32).hex(), data_dir=tmp_path), CollectorRegistry())

    a = node()
    await nursery.start(a.run)
    assert a.discv5 is not None and a.enr is not None
    assert Enr.from_text(a.enr).udp == a.discv5.port != 0  # the ENR we log at start carries discv5's port
    b = node("--discv5-bootstrap-node", a.enr)
    await nursery.start(b.run)
    await wait_until(lambda: a.peer_id in b.peers() and b.peer_id in a.peers(), 60,
                     "a relay connection between the two nodes, found by discv5")
