"""Config precedence (defaults < YAML < env < flags) and all-at-once error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.app.config import SETTINGS, ConfigErrors, load_config
from tests.helpers.config import parse_flags


def test_defaults_are_valid() -> None:
    cfg = load_config(None, {}, env={})
    assert cfg.v1.port == 30303 and cfg.v2.tcp_port == 60000 and cfg.v1.pow == 0.002
    assert cfg.effective_shards() == (0,)
    assert cfg.sources == {}


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text("peer_id: A\nv1:\n  pow: 0.2\n  port: 1111\nv2:\n  tcp_port: 2222\n  cluster_id: 3\n")
    env = {"WAKU_BRIDGE_V1_PORT": "3333", "WAKU_BRIDGE_V2_TCP_PORT": "4444"}
    flags = parse_flags("bridge", ["--libp2p-tcp-port", "5555"])
    cfg = load_config(f, flags, env=env)
    assert cfg.peer_id == "A" and cfg.v1.pow == 0.2  # file
    assert cfg.v1.port == 3333  # env beats file
    assert cfg.v2.tcp_port == 5555  # flag beats env
    assert cfg.v2.cluster_id == 3
    assert cfg.sources["v1.port"] == "env" and cfg.sources["v2.tcp_port"] == "flag"


def test_all_errors_reported_at_once_with_keys(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "v1:\n  pow: -1\n  port: 70000\n  staticnodes: [nonsense]\n  pool_capacity: 10\n"
        "v2:\n  nodekey: xyz\n  store_message_retention_policy: forever\nbogus: 1\n"
    )
    with pytest.raises(ConfigErrors) as ei:
        load_config(f, {}, env={"WAKU_BRIDGE_V2_CLUSTER_ID": "many"})
    keys = {e.key for e in ei.value.errors}
    assert keys >= {"v1.pow", "v1.port", "v1.staticnodes", "v1.pool_capacity", "v2.nodekey",
                    "v2.store_message_retention_policy", "bogus", "v2.cluster_id"}
    assert "from env" in str(ei.value)


def test_repeatable_flags_and_bool_forms() -> None:
    enode = "enode://" + "ab" * 64 + "@127.0.0.1:30303"
    flags = parse_flags("bridge", ["--staticnode-v1", enode, "--staticnode-v1", enode.replace("303", "304"),
                              "--store", "--filter=false", "--shard", "1", "--shard", "2",
                              "--num-shards-in-network", "8", "--waku-v1-pool-capacity", "100000"])
    cfg = load_config(None, flags, env={})
    assert cfg.v1.pool_capacity == 100_000
    assert len(cfg.v1.staticnodes) == 2
    assert cfg.v2.store is True and cfg.v2.filter is False
    assert cfg.v2.shards == (1, 2)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigErrors) as ei:
        load_config(None, parse_flags("bridge", ["--bridge-pubsub-topic", "/waku/2/rs/5/0",
                                            "--bridge-dedup-window", "5", "--devp2p-tcp-port", "60000"]), env={})
    keys = {e.key for e in ei.value.errors}
    assert keys == {"bridge.pubsub_topic", "bridge.dedup_window", "v2.tcp_port"}


def test_v2_node_uses_nwaku_flag_names() -> None:
    flags = parse_flags("v2-node", ["--tcp-port", "61000", "--nodekey", "11" * 32, "--staticnode",
                               "/ip4/127.0.0.1/tcp/1/p2p/16Uiu2HAmSH2XVgZqYHWucap5kuPzLnt2TsNQkoppVxB5eJGvaXwm"])
    cfg = load_config(None, flags, env={})
    assert cfg.v2.tcp_port == 61000 and cfg.v2.nodekey == "11" * 32 and len(cfg.v2.staticnodes) == 1


def test_every_setting_has_env_and_help() -> None:
    names = [s.env for s in SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.help for s in SETTINGS)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="cannot read"):
        load_config(tmp_path / "missing.yaml", {}, env={})
    bad = tmp_path / "x.yaml"
    bad.write_text("v1: [unclosed\n")
    with pytest.raises(ConfigErrors, match="not valid YAML"):
        load_config(bad, {}, env={})
    bad.write_text("- a list\n")
    with pytest.raises(ConfigErrors, match="mapping"):
        load_config(bad, {}, env={})


def test_each_setting_is_declared_once_and_reaches_the_node_config() -> None:
    # SETTINGS is the one declaration: each section field is a setting and each setting a field.
    import dataclasses

    from bridge.app.config import AppConfig
    from bridge.app.v2service import v2_node_config

    cfg = load_config(None, {}, env={})
    keys = {s.key for s in SETTINGS}
    fields = set()
    for f in dataclasses.fields(AppConfig):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            fields |= {f"{f.name}.{g.name}" for g in dataclasses.fields(value)}
        elif f.name != "sources":
            fields.add(f.name)
    assert fields == keys
    # every v2 setting the node knows by the same (nwaku) name arrives unchanged
    flags = parse_flags("bridge", ["--max-connections", "7", "--filter-max-criteria", "9", "--store"])
    node = v2_node_config(load_config(None, flags, env={}), "11" * 32)
    assert (node.max_connections, node.filter_max_criteria, node.store) == (7, 9, True)


def test_enodes_and_pubsub_topics_are_parsed_by_the_layers_own_parsers() -> None:
    key = "ab" * 64
    ok = load_config(None, parse_flags("bridge", ["--staticnode-v1", f"enode://{key}@[::1]:30303",
                                             "--bridge-pubsub-topic", "/waku/2/rs/0/3"]), env={})
    assert ok.v1.staticnodes == (f"enode://{key}@[::1]:30303",)
    for argv, key_name in ((["--staticnode-v1", f"enode://{key}@host"], "v1.staticnodes"),
                           (["--bridge-pubsub-topic", "/waku/2/rs/0/1024"], "bridge.pubsub_topic")):
        with pytest.raises(ConfigErrors) as e:
            load_config(None, parse_flags("bridge", argv), env={})
        assert [x.key for x in e.value.errors] == [key_name]
