"""``--store-message-db-url`` (nwaku's flag) on the bridge and on v2-node: SQLite and PostgreSQL
URLs parse, reach the node's config, and a bad one is refused with the key, never with its password."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from bridge.app.config import ConfigErrors, load_config
from bridge.app.v2service import v2_node_config
from tests.bridge.app.test_cli import run
from tests.helpers.config import parse_flags
from tests.helpers.net import LOOPBACK, free_ports

PG = "postgres://waku:s3cret@db.example:5432/archive"


@pytest.mark.parametrize("group", ["bridge", "v2-node"])
def test_db_url_flag_reaches_the_node(group: str, tmp_path: Path) -> None:
    for url in (PG, "sqlite:///var/lib/waku/store.sqlite3", "sqlite://:memory:"):
        cfg = load_config(None, parse_flags(group, ["--store", "true", "--store-message-db-url", url]), env={})
        assert cfg.v2.store_message_db_url == url
        node_cfg = v2_node_config(cfg, secrets.token_bytes(32).hex(), data_dir=tmp_path)
        assert node_cfg.store_message_db_url == url and node_cfg.store_db_url() == url
    cfg = load_config(None, parse_flags(group, ["--store-message-db-url", "sqlite://s.db"]), env={})
    assert v2_node_config(cfg, "11" * 32, data_dir=tmp_path).store_db_url() == f"sqlite://{tmp_path / 's.db'}"


@pytest.mark.parametrize("bad", ["postgres://waku:s3cret@db.example:5432", "mysql://waku:s3cret@h/db",
                                 "postgres://waku:s3cret@db.example:port/db", "db.example"])
def test_bad_db_url_is_a_config_error_without_the_password(bad: str) -> None:
    for group in ("bridge", "v2-node"):
        with pytest.raises(ConfigErrors) as err:
            load_config(None, parse_flags(group, ["--store-message-db-url", bad]), env={})
        assert [e.key for e in err.value.errors] == ["v2.store_message_db_url"]
        assert "s3cret" not in str(err.value)
    with pytest.raises(ConfigErrors):  # the environment too
        load_config(None, {}, env={"WAKU_BRIDGE_V2_STORE_MESSAGE_DB_URL": bad})


def test_check_config_show_hides_the_password(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"v2:\n  store: true\n  store_message_db_url: {PG}\n")
    r = run("check-config", str(f), "--show")
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout
    shown = json.loads(r.stdout.split("\n", 1)[1])["v2"]["store_message_db_url"]
    assert shown == "postgres://waku:***@db.example:5432/archive"


def test_v2_node_with_an_unreachable_database_exits_with_one_clear_error(tmp_path: Path) -> None:
    """Tried for 10 s, then exit 1 with the reason: no traceback, no password, no crash loop."""
    db, tcp, ws = free_ports(3)
    r = run("v2-node", "--store", "true", "--store-message-db-url", f"postgres://waku:s3cret@{LOOPBACK}:{db}/archive",
            "--tcp-port", str(tcp), "--websocket-port", str(ws), "--listen-address", LOOPBACK,
            "--data-dir", str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert "cannot open archive: database postgresql://waku:***@" in r.stderr
    assert "Traceback" not in r.stderr and "s3cret" not in r.stderr
