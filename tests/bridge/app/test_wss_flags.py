"""nwaku's secure WebSocket flags (--websocket-secure-support, --websocket-secure-key-path,
--websocket-secure-cert-path): parsed for the bridge and v2-node, checked at load, carried to the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.app.config import ConfigErrors, load_config
from bridge.app.v2service import v2_node_config
from tests.helpers.config import parse_flags
from tests.helpers.tls import TlsFiles, make_tls_files


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls", "wss")


def _errors(argv: list[str], group: str = "v2-node") -> dict[str, str]:
    with pytest.raises(ConfigErrors) as err:
        load_config(None, parse_flags(group, argv), env={})
    return {e.key: e.message for e in err.value.errors}


def test_off_by_default() -> None:
    cfg = load_config(None, {}, env={})
    assert (cfg.v2.websocket_secure_support, cfg.v2.websocket_secure_key_path,
            cfg.v2.websocket_secure_cert_path) == (False, None, None)


@pytest.mark.parametrize("group", ["bridge", "v2-node"])
def test_flags_reach_the_node_config(group: str, tls: TlsFiles, tmp_path: Path) -> None:
    argv = ["--websocket-secure-support", "--websocket-secure-key-path", str(tls.server_key),
            "--websocket-secure-cert-path", str(tls.server_cert), "--websocket-port", "8443"]
    cfg = load_config(None, parse_flags(group, argv), env={})
    node = v2_node_config(cfg, "11" * 32, data_dir=tmp_path)
    assert (node.websocket_secure_support, node.websocket_secure_key_path, node.websocket_secure_cert_path,
            node.websocket_port) == (True, str(tls.server_key), str(tls.server_cert), 8443)


def test_the_same_from_yaml_and_environment(tls: TlsFiles, tmp_path: Path) -> None:
    f = tmp_path / "bridge.yaml"
    f.write_text(f"v2:\n  websocket_secure_support: true\n  websocket_secure_cert_path: {tls.server_cert}\n")
    cfg = load_config(f, {}, env={"WAKU_BRIDGE_V2_WEBSOCKET_SECURE_KEY_PATH": str(tls.server_key)})
    assert cfg.v2.websocket_secure_support and cfg.v2.websocket_secure_key_path == str(tls.server_key)


def test_wss_needs_both_files() -> None:
    errors = _errors(["--websocket-secure-support"])
    assert set(errors) == {"v2.websocket_secure_key_path", "v2.websocket_secure_cert_path"}
    assert all("required with v2.websocket_secure_support" in m for m in errors.values())


def test_an_unreadable_file_is_reported_once(tls: TlsFiles, tmp_path: Path) -> None:
    errors = _errors(["--websocket-secure-support", "--websocket-secure-key-path", str(tmp_path / "nope.key"),
                      "--websocket-secure-cert-path", str(tls.server_cert)], "bridge")
    assert list(errors) == ["v2.websocket_secure_key_path"] and "cannot read" in errors["v2.websocket_secure_key_path"]


def test_a_bad_pair_is_a_config_error_at_load(tls: TlsFiles, tmp_path: Path) -> None:
    errors = _errors(["--websocket-secure-support", "--websocket-secure-key-path", str(tls.client_key),
                      "--websocket-secure-cert-path", str(tls.server_cert)])
    assert list(errors) == ["v2.websocket_secure_key_path"]
    assert "does not belong to the certificate" in errors["v2.websocket_secure_key_path"]
    (tmp_path / "cert.pem").write_text("hello\n")
    errors = _errors(["--websocket-secure-support", "--websocket-secure-key-path", str(tls.server_key),
                      "--websocket-secure-cert-path", str(tmp_path / "cert.pem")])
    assert list(errors) == ["v2.websocket_secure_cert_path"] and "not a PEM file" in errors[
        "v2.websocket_secure_cert_path"]


def test_files_without_wss_are_a_mistake(tls: TlsFiles) -> None:
    errors = _errors(["--websocket-secure-cert-path", str(tls.server_cert)])
    assert errors == {"v2.websocket_secure_cert_path": "only used with v2.websocket_secure_support"}


def test_the_wss_port_is_checked_for_clashes_without_plain_ws(tls: TlsFiles) -> None:
    errors = _errors(["--websocket-support=false", "--websocket-secure-support", "--websocket-secure-key-path",
                      str(tls.server_key), "--websocket-secure-cert-path", str(tls.server_cert),
                      "--tcp-port", "9100", "--websocket-port", "9100"])
    assert "v2.websocket_port" in errors
