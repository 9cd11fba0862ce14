"""v2/rpc.py over real loopback hosts: one exchange per stream, the failure modes callers map."""

from __future__ import annotations

import pytest
import trio

from tests.helpers.v2host import start_host
from v2.host import DialError
from v2.rpc import UNKNOWN_REQUEST_ID, new_request_id, request, respond
from v2.stream import FrameTooLarge, Stream

REVERSE = "/waku-bridge/test-rpc-reverse/1.0.0"
MUTE = "/waku-bridge/test-rpc-mute/1.0.0"
BIG = "/waku-bridge/test-rpc-big/1.0.0"


async def reverse(stream: Stream) -> None:
    req = await stream.read_lp(1024, timeout=5)
    assert req is not None
    assert await stream.read_lp(1024, timeout=5) is None  # the client closed its write side
    assert await respond(stream, req[::-1])


async def mute(stream: Stream) -> None:
    await stream.read_lp(1024, timeout=5)
    await stream.close_write()


async def big(stream: Stream) -> None:
    await stream.read_lp(1024, timeout=5)
    await respond(stream, b"x" * 2048)


async def test_request_response_and_failures(nursery: trio.Nursery) -> None:
    server = await start_host(nursery, handlers={REVERSE: reverse, MUTE: mute, BIG: big})
    client = await start_host(nursery)
    await client.connect(server.listen_addrs[0])
    peer = server.peer_id
    assert await request(client, peer, [REVERSE], b"abc", 1024, timeout=5) == b"cba"
    assert await request(client, peer, [MUTE], b"abc", 1024, timeout=5) is None
    with pytest.raises(FrameTooLarge):
        await request(client, peer, [BIG], b"abc", 1024, timeout=5, reset_on_error=True)
    assert await request(client, peer, [REVERSE], b"again", 1024, timeout=5) == b"niaga"  # connection intact
    with pytest.raises(DialError):
        await request(client, peer, ["/waku-bridge/not-served/1.0.0"], b"abc", 1024, timeout=5)


def test_request_ids() -> None:
    a, b = new_request_id(), new_request_id()
    assert a != b and len(a) == 36 and UNKNOWN_REQUEST_ID == "N/A"
