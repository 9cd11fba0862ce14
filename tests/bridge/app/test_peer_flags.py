"""nwaku's connection-limit flags (--max-connections, --relay-service-ratio, --ip-colocation-limit)
reach the node's peer manager, for the bridge and for v2-node."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bridge.app.config import ConfigErrors, load_config
from bridge.app.v2service import v2_node_config
from tests.helpers.config import parse_flags
from v2.node import V2Node


def test_defaults_are_nwakus() -> None:
    cfg = load_config(None, {}, env={})
    assert (cfg.v2.max_connections, cfg.v2.relay_service_ratio, cfg.v2.ip_colocation_limit) == (50, "60:40", 5)


def test_flags_reach_the_peer_manager(tmp_path: Path) -> None:
    for group in ("bridge", "v2-node"):
        argv = ["--max-connections", "30", "--relay-service-ratio", "80:20", "--ip-colocation-limit", "2"]
        cfg = load_config(None, parse_flags(group, argv), env={})
        node = V2Node(v2_node_config(cfg, secrets.token_bytes(32).hex(), data_dir=tmp_path), CollectorRegistry())
        limits = node.peer_status()["limits"]
        # 24 relay slots: 8 outbound, 16 inbound; 6 service slots
        assert limits == {"max_connections": 30, "out_relay_target": 8, "in_relay_target": 16, "service_max": 6,
                          "ip_colocation_limit": 2}


@pytest.mark.parametrize("argv", [["--relay-service-ratio", "70:40"], ["--relay-service-ratio", "x"],
                                  ["--ip-colocation-limit", "-1"]])
def test_bad_values_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(ConfigErrors) as err:
        load_config(None, parse_flags("v2-node", argv), env={})
    assert [e.key for e in err.value.errors] == ["v2." + argv[0][2:].replace("-", "_")]
