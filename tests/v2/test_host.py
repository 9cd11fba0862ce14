"""The py-libp2p wrapper on loopback: TCP and WebSocket, length-prefixed request/response."""

from __future__ import annotations

import secrets

import pytest
import trio

from bridge.app.keys import describe_key
from tests.helpers.delayproxy import DelayProxy, Plan
from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v2.host import DialError, Host, HostConfig
from v2.stream import FrameTooLarge, Stream, StreamTimeout

ECHO = "/waku-bridge/test-echo/1.0.0"


async def start(nursery: trio.Nursery, ws: bool = True) -> Host:
    tcp, wsp = free_ports(2)
    h = Host(HostConfig(secrets.token_bytes(32), "127.0.0.1", tcp, wsp if ws else None))

    async def echo(stream: Stream) -> None:
        while (req := await stream.read_lp(1024, timeout=5)) is not None:
            await stream.write_lp(req[::-1])
        await stream.close_write()

    h.set_stream_handler(ECHO, echo)
    await nursery.start(h.run)
    return h


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_request_response(nursery: trio.Nursery, transport: str) -> None:
    a, b = await start(nursery), await start(nursery)
    assert a.peer_id.startswith("16Uiu2")  # secp256k1 identity
    addr = next(x for x in a.listen_addrs if (x.split("/")[5] == "ws") == (transport == "ws"))
    assert await b.connect(addr) == a.peer_id
    s = await b.new_stream(a.peer_id, [ECHO])
    for msg in (b"hello", b"", b"x" * 1000):
        await s.write_lp(msg)
        assert await s.read_lp(2048) == msg[::-1]
    await s.close_write()
    assert await s.read_lp(2048) is None  # server closed its write side after our EOF
    assert a.peer_id in b.connected_peers()


async def test_limits_and_errors(nursery: trio.Nursery) -> None:
    a, b = await start(nursery), await start(nursery)
    await b.connect(a.listen_addrs[0])
    s = await b.new_stream(a.peer_id, [ECHO])
    await s.write_lp(b"y" * 1000)
    with pytest.raises(FrameTooLarge):
        await s.read_lp(10)
    s2 = await b.new_stream(a.peer_id, [ECHO])
    with pytest.raises(StreamTimeout):
        await s2.read_lp(100, timeout=0.3)
    with pytest.raises(DialError):
        await b.new_stream(a.peer_id, ["/no/such/protocol"], timeout=5)
    nobody = describe_key(secrets.token_bytes(32).hex())["peer_id"]
    with pytest.raises(DialError):
        await b.connect(f"/ip4/127.0.0.1/tcp/{free_ports(1)[0]}/p2p/{nobody}", timeout=3)
    with pytest.raises(DialError):
        await b.connect("/ip4/127.0.0.1/tcp/1", timeout=3)  # no /p2p part


async def stoppable(nursery: trio.Nursery, host: Host) -> trio.CancelScope:
    """Run ``host`` under its own cancel scope (cancel it to stop just that host)."""
    scope = trio.CancelScope()

    async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await host.run(task_status=task_status)

    await nursery.start(runner)
    return scope


async def test_stopped_host_refuses_connections(nursery: trio.Nursery) -> None:
    a = Host(HostConfig(secrets.token_bytes(32), "127.0.0.1", *free_ports(2)))
    b = await start(nursery)
    scope = await stoppable(nursery, a)
    addrs = a.listen_addrs
    for addr in addrs:
        assert await b.connect(addr) == a.peer_id
    scope.cancel()
    await wait_until(lambda: a.peer_id not in b.connected_peers())
    for addr in addrs:
        port = int(addr.split("/")[4])
        with pytest.raises(OSError):  # the listening socket itself is gone (tcp and ws)
            await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
        with pytest.raises(DialError):
            await b.connect(addr, timeout=5)
    assert a.peer_id not in b.connected_peers()


async def test_dials_dns4_names(nursery: trio.Nursery) -> None:
    a, b = await start(nursery), await start(nursery)
    tcp_port = a.config.tcp_port
    assert await b.connect(f"/dns4/localhost/tcp/{tcp_port}/p2p/{a.peer_id}") == a.peer_id
    assert a.peer_id in b.connected_peers()
    with pytest.raises(DialError):
        await b.connect(f"/dns4/no-such-host.invalid/tcp/{tcp_port}/p2p/{a.peer_id}", timeout=5)


async def test_libp2p_never_dials_on_its_own(nursery: trio.Nursery) -> None:
    # py-libp2p's AutoConnector would dial every peerstore entry not recently disconnected: here
    # ``late`` (learned from a dial that failed while it was down) as soon as we drop ``b``.
    a, b = await start(nursery), await start(nursery)
    late = Host(HostConfig(secrets.token_bytes(32), "127.0.0.1", free_ports(1)[0], None))
    late_addr = f"/ip4/127.0.0.1/tcp/{late.config.tcp_port}/p2p/{late.peer_id}"
    with pytest.raises(DialError):
        await a.connect(late_addr, timeout=3)  # down: the address lands in a's peerstore
    await nursery.start(late.run)
    await a.connect(b.listen_addrs[0])
    await a.disconnect(b.peer_id)  # py-libp2p schedules an auto-connect round on every disconnect
    await wait_until(lambda: b.peer_id not in a.connected_peers())
    # ... and its periodic round; run one to completion (it awaits its dials) to be sure.
    await a.libp2p_host.get_network().auto_connector.maybe_connect()
    await trio.sleep(0.5)  # let any dial that was started anyway register
    assert a.connected_peers() == []
    assert a.peer_id not in late.connected_peers() and a.peer_id not in b.connected_peers()


async def test_redial_right_after_a_failed_dial(nursery: trio.Nursery) -> None:
    # py-libp2p's 60 s negative cache must not override the peer manager's own backoff.
    a = await start(nursery)
    late = Host(HostConfig(secrets.token_bytes(32), "127.0.0.1", free_ports(1)[0], None))
    addr = f"/ip4/127.0.0.1/tcp/{late.config.tcp_port}/p2p/{late.peer_id}"
    with pytest.raises(DialError):
        await a.connect(addr, timeout=3)
    await nursery.start(late.run)
    assert await a.connect(addr, timeout=5) == late.peer_id


@pytest.mark.parametrize("offer", ["plaintext", "tls", "noise"])
async def test_security_is_noise_only(nursery: trio.Nursery, offer: str) -> None:
    """py-libp2p's default also accepts TLS, secio and PLAINTEXT; go-libp2p (go-waku) proposes TLS
    first, and py-libp2p's TLS let an ssl.SSLError escape a stream write (v2/host.py _noise_only).
    A dialer offering only plaintext or only TLS is refused; noise still connects."""
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.secp256k1 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.security.tls.transport import PROTOCOL_ID as TLS_ID
    from libp2p.security.tls.transport import TLSTransport

    ours = await start(nursery, ws=False)
    kp = create_new_key_pair(secrets.token_bytes(32))
    sec = {"plaintext": {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(kp)},
           "tls": {TProtocol(TLS_ID): TLSTransport(kp)},
           "noise": {TProtocol(NOISE_ID): NoiseTransport(kp, noise_privkey=x25519().private_key)}}[offer]
    (port,) = free_ports(1)
    listen = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]
    other = new_host(key_pair=kp, sec_opt=sec, listen_addrs=listen)
    async with other.run(listen_addrs=listen):
        info = info_from_p2p_addr(multiaddr.Multiaddr(ours.listen_addrs[0]))
        if offer == "noise":
            with trio.fail_after(10):
                await other.connect(info)
            assert str(other.get_id()) in ours.connected_peers() or other.get_network().get_connections(info.peer_id)
        else:
            with trio.fail_after(10), pytest.raises(Exception):  # noqa: B017  # py-libp2p raises several types
                await other.connect(info)
            assert not other.get_network().get_connections(info.peer_id)


async def test_redial_after_a_reset_uses_the_dialled_address(nursery: trio.Nursery) -> None:
    """A peer reached through a proxy (or a NAT, another interface) is redialled there after an
    RST: py-libp2p dials whatever its peerstore holds for the peer, which identify has replaced
    with the peer's own listen addresses (v2/host.py ``_dial_first``)."""
    a, b = await start(nursery, ws=False), await start(nursery, ws=False)
    proxy = DelayProxy("127.0.0.1", ("127.0.0.1", b.config.tcp_port), Plan(delay=0.0), seed=1)
    await nursery.start(proxy.run)
    via = f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{b.peer_id}"
    assert await a.connect(via) == b.peer_id
    await wait_until(lambda: a.peer_protocols(b.peer_id), what="identify")
    assert a.peer_addrs(b.peer_id) == [b.listen_addrs[0]]  # identify replaced the address we dialled
    proxy.reset_all()
    await wait_until(lambda: b.peer_id not in a.connected_peers(), what="the RST noticed")
    assert proxy.stats.resets == 1
    assert await a.connect(via, timeout=10) == b.peer_id
    assert proxy.stats.connections == 2  # through the proxy again, not to b's own address
    assert b.peer_id in a.connected_peers()
