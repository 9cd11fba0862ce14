"""The py-libp2p wrapper on loopback: TCP and WebSocket, length-prefixed request/response."""

from __future__ import annotations

import secrets

import pytest
import trio

from bridge.app.keys import describe_key
from tests.helpers.net import free_ports
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
