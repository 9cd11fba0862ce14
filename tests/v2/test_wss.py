"""Secure WebSocket (v2/wss.py): the server context from PEM files, and a node's wss listener on
loopback, with a certificate made at test time (tests/helpers/tls.py)."""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry
from trio_websocket import open_websocket_url

from tests.helpers.net import LOOPBACK, free_ports
from tests.helpers.tls import TlsFiles, make_tls_files
from tests.helpers.wait import wait_until
from v2.enr.enr import Enr
from v2.node import V2Node, V2NodeConfig
from v2.wss import HandshakeFailure, WssConfigError, classify, server_context

MULTISTREAM = b"\x13/multistream/1.0.0\n"  # multistream-select's header, length-prefixed


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls", "wss")


def test_server_context_loads_a_matching_pair(tls: TlsFiles) -> None:
    ctx = server_context(tls.server_cert, tls.server_key)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_server_context_names_the_bad_file(tls: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(WssConfigError) as err:
        server_context(tmp_path / "missing.pem", tls.server_key)
    assert err.value.setting == "cert" and "cannot read" in err.value.message
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(WssConfigError) as err:
        server_context(tls.server_cert, tmp_path / "junk.pem")
    assert err.value.setting == "key" and "not a PEM file" in err.value.message
    # the client's key is a valid key, just not the server certificate's
    with pytest.raises(WssConfigError) as err:
        server_context(tls.server_cert, tls.client_key)
    assert err.value.setting == "key" and "does not belong" in err.value.message
    # a key where the certificate should be
    with pytest.raises(WssConfigError) as err:
        server_context(tls.server_key, tls.server_key)
    assert err.value.setting == "cert"


def test_classify() -> None:
    assert classify(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")) is HandshakeFailure.EOF
    alert = ssl.SSLError(1, "tlsv1 alert unknown ca")
    alert.reason = "TLSV1_ALERT_UNKNOWN_CA"
    assert classify(alert) is HandshakeFailure.CLIENT_ALERT
    junk = ssl.SSLError(1, "wrong version number")
    junk.reason = "WRONG_VERSION_NUMBER"
    assert classify(junk) is HandshakeFailure.PROTOCOL


def _node(tls: TlsFiles, **kw: object) -> V2Node:
    tcp, ws = free_ports(2)
    cfg = V2NodeConfig(secrets.token_bytes(32), LOOPBACK, tcp, websocket_support=False, websocket_port=ws,
                       websocket_secure_support=True, websocket_secure_cert_path=str(tls.server_cert),
                       websocket_secure_key_path=str(tls.server_key), **kw)  # type: ignore[arg-type]
    return V2Node(cfg, CollectorRegistry())


def _failures(node: V2Node, reason: str) -> float:
    return node.registry.get_sample_value("waku_node_tls_handshake_failures_total", {"reason": reason}) or 0.0


def test_wss_without_key_or_certificate_is_refused_at_start(tls: TlsFiles) -> None:
    cfg = V2NodeConfig(secrets.token_bytes(32), LOOPBACK, free_ports(1)[0], websocket_secure_support=True,
                       websocket_secure_cert_path=str(tls.server_cert))
    with pytest.raises(WssConfigError, match="websocket_secure_key_path"):
        V2Node(cfg, CollectorRegistry())


async def test_node_listens_on_wss_and_announces_it(nursery: trio.Nursery, tls: TlsFiles) -> None:
    node = _node(tls)
    await nursery.start(node.run)
    ws_port = node.config.websocket_port
    assert node.ws_addr == f"/ip4/{LOOPBACK}/tcp/{ws_port}/wss/p2p/{node.peer_id}"
    assert not any(a.split("/")[5:6] == ["ws"] for a in node.listen_addrs)  # wss instead of ws, as nwaku
    assert node.listen_addrs[0] == f"/ip4/{LOOPBACK}/tcp/{node.config.tcp_port}/p2p/{node.peer_id}"
    assert node.enr is not None
    assert Enr.from_text(node.enr).waku_multiaddrs == [f"/ip4/{LOOPBACK}/tcp/{ws_port}/wss"]


async def test_junk_on_the_wss_port_is_counted_and_the_listener_keeps_serving(
        nursery: trio.Nursery, tls: TlsFiles) -> None:
    node = _node(tls)
    await nursery.start(node.run)
    assert [_failures(node, r) for r in HandshakeFailure] == [0.0] * len(HandshakeFailure)
    assert node.registry.get_sample_value("waku_node_tls_handshake_failures_total", {"reason": "eof"}) == 0.0
    port = node.config.websocket_port
    junk = [b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",  # a plain ws client on the wss port
            b"\x16\x03\x01\x00\x08" + secrets.token_bytes(8),  # a TLS record header around garbage
            secrets.token_bytes(4096)]
    for data in junk:
        s = await trio.open_tcp_stream(LOOPBACK, port)
        await s.send_all(data)
        await s.aclose()
    s = await trio.open_tcp_stream(LOOPBACK, port)  # connects and hangs up without a byte
    await s.aclose()
    await wait_until(lambda: _failures(node, "protocol") >= len(junk) and _failures(node, "eof") >= 1, timeout=30,
                     what="the junk clients counted")

    # A client that does not trust the test CA refuses our certificate (it is really verified) ...
    untrusting = trio.SSLStream(await trio.open_tcp_stream(LOOPBACK, port), ssl.create_default_context(),
                                server_hostname=LOOPBACK)
    with pytest.raises(trio.BrokenResourceError) as err:
        await untrusting.do_handshake()
    assert isinstance(err.value.__cause__, ssl.SSLCertVerificationError)
    await trio.aclose_forcefully(untrusting)
    # ... and one that trusts it gets TLS, the ws upgrade and libp2p's multistream-select.
    async with open_websocket_url(f"wss://{LOOPBACK}:{port}/",
                                  ssl_context=ssl.create_default_context(cafile=str(tls.ca))) as ws:
        await ws.send_message(MULTISTREAM)
        with trio.fail_after(10):
            assert await ws.get_message() == MULTISTREAM


async def _closed_by_server(stream: trio.abc.Stream) -> bool:
    try:
        return await stream.receive_some() == b""  # the server sends nothing before the upgrade
    except trio.BrokenResourceError:  # TLS without close_notify (trio's https_compatible server)
        return True


async def test_a_client_stuck_before_the_upgrade_is_closed(nursery: trio.Nursery, tls: TlsFiles,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # v2/host.py's connect timeout (15 s; trio-websocket's default of 60 s otherwise), shortened here
    import v2.host

    monkeypatch.setattr(v2.host, "_WS_CONNECT_TIMEOUT", 0.5)
    node = _node(tls)
    await nursery.start(node.run)
    failed = await trio.open_tcp_stream(LOOPBACK, node.config.websocket_port)
    await failed.send_all(b"GET / HTTP/1.1\r\n\r\n")  # its handshake fails at once
    silent = trio.SSLStream(await trio.open_tcp_stream(LOOPBACK, node.config.websocket_port),
                            ssl.create_default_context(cafile=str(tls.ca)), server_hostname=LOOPBACK)
    await silent.do_handshake()  # TLS completes, then no upgrade request
    with trio.fail_after(30):
        assert await _closed_by_server(failed) and await _closed_by_server(silent)
    await failed.aclose()
    await trio.aclose_forcefully(silent)
