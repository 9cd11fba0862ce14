"""nwaku's repeatable --rate-limit and the relay's per-peer limit flags reach the node's services,
for the bridge and for v2-node, from flags, the YAML file and the environment; bad values are
config errors naming their key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bridge.app.config import ConfigErrors, load_config
from bridge.app.v2service import v2_node_config
from tests.helpers.config import parse_flags
from v2.node import V2Node
from v2.ratelimit import (
    DEFAULT_RATE_LIMITS,
    DEFAULT_RELAY_PEER_BYTES_PER_S,
    DEFAULT_RELAY_PEER_MESSAGES_PER_S,
    RateLimit,
    RateLimitedProtocol,
)

P = RateLimitedProtocol


def node_of(argv: list[str], group: str, tmp_path: Path, path: Path | None = None,
            env: dict[str, str] | None = None) -> V2Node:
    cfg = load_config(path, parse_flags(group, argv), env=env or {})
    return V2Node(v2_node_config(cfg, secrets.token_bytes(32).hex(), data_dir=tmp_path), CollectorRegistry())


def test_defaults_protect(tmp_path: Path) -> None:
    cfg = load_config(None, {}, env={})
    assert cfg.v2.rate_limits == ()
    assert (cfg.v2.relay_rate_limit_messages, cfg.v2.relay_rate_limit_bytes) == (
        DEFAULT_RELAY_PEER_MESSAGES_PER_S, DEFAULT_RELAY_PEER_BYTES_PER_S)
    node = node_of(["--store", "--filter", "--lightpush", "--peer-exchange"], "v2-node", tmp_path)
    assert node.rate_limits == dict(DEFAULT_RATE_LIMITS)
    assert node.store is not None and node.store.gate.limiter is not None
    assert node.store.gate.limiter.limit == RateLimit(100, 1.0)
    assert node.relay.peer_limiter.messages_per_s == DEFAULT_RELAY_PEER_MESSAGES_PER_S


def test_repeated_flags_reach_every_service(tmp_path: Path) -> None:
    argv = ["--store", "--filter", "--lightpush", "--peer-exchange",
            "--rate-limit", "store:10/1s", "--rate-limit=storev2:3/1m", "--rate-limit", "lightpush:0/1s",
            "--rate-limit", "px:2/1h", "--relay-rate-limit-messages", "300", "--relay-rate-limit-bytes", "0"]
    for group in ("bridge", "v2-node"):
        node = node_of(argv, group, tmp_path)
        assert node.store is not None and node.legacy_store is not None and node.lightpush is not None
        assert node.peer_exchange is not None and node.filter is not None
        assert node.store.gate.limiter is not None and node.store.gate.limiter.limit == RateLimit(10, 1.0)
        assert node.legacy_store.gate.limiter is not None
        assert node.legacy_store.gate.limiter.limit == RateLimit(3, 60.0)
        assert node.lightpush.gate.limiter is None  # 0/1s: off
        assert node.peer_exchange.gate.limiter is not None
        assert node.peer_exchange.gate.limiter.limit == RateLimit(2, 3600.0)
        assert node.filter.gate.limiter is not None
        assert node.filter.gate.limiter.limit == DEFAULT_RATE_LIMITS[P.FILTER]  # not named: the default
        assert (node.relay.peer_limiter.messages_per_s, node.relay.peer_limiter.bytes_per_s) == (300, 0)


def test_yaml_list_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("v2:\n  rate_limits: ['filter:7/1s', '50/1m']\n  relay_rate_limit_messages: 123\n")
    node = node_of([], "bridge", tmp_path, path)
    assert node.rate_limits[P.FILTER] == RateLimit(7, 1.0)
    assert node.rate_limits[P.STOREV3] == RateLimit(50, 60.0)  # a global setting replaces the defaults
    assert node.relay.peer_limiter.messages_per_s == 123
    env_node = node_of([], "v2-node", tmp_path, env={"WAKU_BRIDGE_V2_RATE_LIMITS": "px:9/1s,store:8/1s"})
    assert (env_node.rate_limits[P.PX], env_node.rate_limits[P.STOREV2]) == (RateLimit(9, 1.0), RateLimit(8, 1.0))
    flag_node = node_of(["--rate-limit", "px:1/1s"], "v2-node", tmp_path, path)  # flags replace the file's list
    assert flag_node.rate_limits[P.FILTER] == DEFAULT_RATE_LIMITS[P.FILTER]


@pytest.mark.parametrize(("argv", "key"), [
    (["--rate-limit", "store:10"], "v2.rate_limits"),
    (["--rate-limit", "relay:10/1s"], "v2.rate_limits"),
    (["--rate-limit", "store:10/1s", "--rate-limit", "px:1/1d"], "v2.rate_limits"),
    (["--relay-rate-limit-messages", "-1"], "v2.relay_rate_limit_messages"),
    (["--relay-rate-limit-bytes", "lots"], "v2.relay_rate_limit_bytes"),
])
def test_bad_values_are_config_errors(argv: list[str], key: str) -> None:
    with pytest.raises(ConfigErrors) as err:
        load_config(None, parse_flags("v2-node", argv), env={})
    assert [e.key for e in err.value.errors] == [key]
    if key == "v2.rate_limits":
        assert "rate-limit setting" in str(err.value) and "<volume>/<period>" in str(err.value)
