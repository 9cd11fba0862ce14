"""The trio transport on real loopback sockets: happy path, keepalive, and every kind of bad input.

Each bad peer must end in a counted failure or a clean disconnect while a good peer connected to
the same server keeps exchanging messages.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import rlp
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from tests.helpers.rlpx import handshake_by_hand
from v1.rlpx.base import Capability, DisconnectReason
from v1.rlpx.enode import Enode
from v1.rlpx.keys import NodeKey
from v1.rlpx.metrics import RLPxMetrics
from v1.rlpx.session import Event, HelloParams, PongReceived, Session, State
from v1.rlpx.transport import PeerDisconnected, RLPxConnection, Timeouts, rlpx_connect, rlpx_serve

HELLO = HelloParams("test", (Capability("waku", 1, 128),))


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return v or 0.0


class EchoServer:
    """Echoes every subprotocol message back (code + 1)."""

    def __init__(self) -> None:
        self.key = NodeKey.generate()
        self.registry = CollectorRegistry()
        self.metrics = RLPxMetrics(self.registry)
        self.port = 0

    async def handler(self, conn: RLPxConnection) -> None:
        try:
            while True:
                code, data = await conn.receive()
                await conn.send(code + 1, data)
        except PeerDisconnected:
            pass

    async def start(self, nursery: trio.Nursery, **kw: Any) -> EchoServer:
        self.port = await nursery.start(
            lambda task_status: rlpx_serve("127.0.0.1", 0, self.key, HELLO, self.handler, metrics=self.metrics,
                                           task_status=task_status, **kw))
        return self

    @property
    def enode(self) -> Enode:
        return Enode(self.key.pubkey, "127.0.0.1", self.port)


async def raw_session(server: EchoServer) -> tuple[trio.SocketStream, Session]:
    """Complete handshake + Hello by hand, leaving the socket for the test to abuse."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    s = Session(NodeKey.generate(), HELLO, os.urandom, remote_pubkey=server.key.pubkey)
    with trio.fail_after(5):
        await handshake_by_hand(stream, s)
        # one echo round trip: the server has processed our Hello and is in its message loop
        await stream.send_all(s.send_message(0, b"\xc0"))
        events: list[Event] = []
        while not events:
            _, events = s.receive(await stream.receive_some(65536))
    return stream, s


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def good_peer_still_works(server: EchoServer) -> None:
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO) as conn:
        await conn.send(3, rlp.encode([b"ping"]))
        with trio.fail_after(5):
            assert await conn.receive() == (4, rlp.encode([b"ping"]))


async def test_roundtrip_both_directions(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO) as conn:
        assert conn.remote_pubkey == server.key.pubkey
        assert conn.remote_hello.client_id == "test"
        for i in range(50):
            payload = rlp.encode([os.urandom(i * 37)])
            await conn.send(1, payload)
            assert await conn.receive() == (2, payload)
    assert sample(server.registry, "rlpx_accept_success_total") == 1


async def test_keepalive_pings_keep_an_idle_session_alive(nursery: trio.Nursery) -> None:
    fast = Timeouts(ping_interval=0.2, idle=1.0)
    server = await EchoServer().start(nursery, timeouts=fast)
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO, timeouts=fast) as conn:
        await trio.sleep(2.5)  # > 2 idle periods with nothing but pings
        await conn.send(0, b"\xc0")
        assert await conn.receive() == (1, b"\xc0")


async def test_silent_peer_times_out(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery, timeouts=Timeouts(idle=0.5, ping_interval=100))
    stream, _ = await raw_session(server)
    await read_until_closed(stream)  # server gives up on a peer that sends no frame
    assert sample(server.registry, "rlpx_disconnects_total", reason="ping_timeout", side="local") == 1


async def test_garbage_before_handshake(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(b"\x00\x90" + os.urandom(400))  # looks like an EIP-8 size, cannot decrypt
    await read_until_closed(stream)
    await good_peer_still_works(server)
    assert sample(server.registry, "rlpx_accept_failure_total", reason="handshake") == 1


async def test_garbage_after_handshake_is_a_mac_failure(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    stream, _ = await raw_session(server)
    await stream.send_all(os.urandom(64))
    await read_until_closed(stream)
    await good_peer_still_works(server)
    assert sample(server.registry, "rlpx_protocol_errors_total", kind="mac") == 1


async def test_bit_flip_in_a_frame_is_a_mac_failure(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    stream, s = await raw_session(server)
    frame = bytearray(s.send_message(1, rlp.encode([b"x" * 40])))
    frame[40] ^= 0x01  # inside the body ciphertext
    await stream.send_all(bytes(frame))
    await read_until_closed(stream)
    assert sample(server.registry, "rlpx_protocol_errors_total", kind="mac") == 1
    await good_peer_still_works(server)


async def test_oversize_frame_refused_from_its_header(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery, max_frame_size=4096)
    stream, s = await raw_session(server)
    s.max_frame_size = 1 << 20  # our side would happily send it
    assert s._codec is not None
    s._codec.max_frame_size = 1 << 20
    s.snappy = False  # keep it big on the wire
    await stream.send_all(s.send_message(1, rlp.encode([b"\x01" * 100_000]))[:4096])  # header arrives first
    await read_until_closed(stream)
    assert sample(server.registry, "rlpx_protocol_errors_total", kind="oversize") == 1
    await good_peer_still_works(server)


@pytest.mark.parametrize("payload", [b"\xff\xff", b"\xc5\x01\x02", os.urandom(30)])
async def test_malformed_hello_is_refused(nursery: trio.Nursery, payload: bytes) -> None:
    class BadHello(Session):
        def _hello_payload(self) -> bytes:
            return payload

    server = await EchoServer().start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    s = BadHello(NodeKey.generate(), HELLO, os.urandom, remote_pubkey=server.key.pubkey)
    await stream.send_all(s.initiate())
    with trio.fail_after(5):
        while s.state is State.HANDSHAKE:
            out, _ = s.receive(await stream.receive_some(65536))
            await stream.send_all(out)
    await read_until_closed(stream)
    assert sample(server.registry, "rlpx_accept_failure_total", reason="protocol") == 1
    await good_peer_still_works(server)


async def test_max_peers_refuses_with_too_many_peers(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery, max_peers=1)
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO) as first:
        async with rlpx_connect(server.enode, NodeKey.generate(), HELLO) as second:
            with pytest.raises(PeerDisconnected) as ei:
                with trio.fail_after(5):
                    await second.receive()
            assert ei.value.reason == DisconnectReason.TOO_MANY_PEERS and ei.value.by_remote
        await first.send(0, b"\xc0")
        assert await first.receive() == (1, b"\xc0")


async def test_connect_to_self_is_refused(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    with pytest.raises(PeerDisconnected):
        async with rlpx_connect(server.enode, server.key, HELLO):
            pass


async def test_remote_disconnect_surfaces_with_reason(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO) as conn:
        await conn.send(0, b"\xc0")  # the server is in its message loop once it echoes
        assert await conn.receive() == (1, b"\xc0")
        await conn.disconnect(DisconnectReason.CLIENT_QUITTING)
        with pytest.raises(PeerDisconnected):
            await conn.receive()
    with trio.fail_after(5):
        while not sample(server.registry, "rlpx_disconnects_total", reason="client_quitting", side="remote"):
            await trio.sleep(0.05)


async def test_legacy_auth_accepted_as_recipient(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO, eip8=False) as conn:
        await conn.send(0, b"\xc0")
        assert await conn.receive() == (1, b"\xc0")


async def test_p2p_v4_peer_gets_no_snappy(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    v4 = HelloParams("old-nim", HELLO.capabilities, p2p_version=4)
    async with rlpx_connect(server.enode, NodeKey.generate(), v4) as conn:
        assert conn.remote_hello.version == 5
        payload = rlp.encode([b"z" * 1000])
        await conn.send(1, payload)
        assert await conn.receive() == (2, payload)


async def test_concurrent_writers_and_pings_keep_both_macs_in_step(nursery: trio.Nursery) -> None:
    # Pings every 5 ms both ways while three tasks send at once and the echo server answers: every
    # Pong, Ping and message must be encoded in wire order, or the peer sees a MAC mismatch.
    busy = Timeouts(ping_interval=0.005, idle=20.0)
    server = await EchoServer().start(nursery, timeouts=busy)
    n, senders = 400, 3
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO, timeouts=busy) as conn:
        async def send(k: int) -> None:
            for i in range(n):
                await conn.send(k, rlp.encode([os.urandom((i * 131) % 20_000)]))

        got = {k + 1: 0 for k in range(senders)}
        async with trio.open_nursery() as inner:
            for k in range(senders):
                inner.start_soon(send, k)
            with trio.fail_after(60):
                while sum(got.values()) < n * senders:
                    code, _ = await conn.receive()
                    got[code] += 1
    assert got == {k + 1: n for k in range(senders)}
    assert sample(server.registry, "rlpx_protocol_errors_total", kind="mac") == 0
    assert sample(server.registry, "rlpx_disconnects_total", reason="breach_of_protocol", side="local") == 0


async def test_a_send_waiting_when_the_session_ends_raises_peer_disconnected(nursery: trio.Nursery) -> None:
    server = await EchoServer().start(nursery)
    async with rlpx_connect(server.enode, NodeKey.generate(), HELLO) as conn:
        result: list[BaseException] = []

        async def sender() -> None:
            try:
                await conn.send(0, b"\xc0")
            except BaseException as exc:  # recorded for the assertion below
                result.append(exc)

        async with conn._write_lock:  # a frame in flight: the sender queues behind it
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            conn._fail(PeerDisconnected(DisconnectReason.CLIENT_QUITTING, by_remote=True))
        with trio.fail_after(5):
            while not result:
                await trio.sleep(0.01)
    assert isinstance(result[0], PeerDisconnected) and result[0].by_remote


async def test_a_ping_is_answered_with_a_pong(nursery: trio.Nursery) -> None:
    # Pongs are written by their own task now (never by the reader): check one comes back.
    server = await EchoServer().start(nursery)
    stream, s = await raw_session(server)
    await stream.send_all(s.send_ping())
    with trio.fail_after(5):
        events: list[object] = []
        while not any(isinstance(e, PongReceived) for e in events):
            _, got = s.receive(await stream.receive_some(65536))
            events.extend(got)
    await stream.aclose()


async def test_a_send_after_the_peer_said_goodbye_reports_its_reason(nursery: trio.Nursery) -> None:
    # The peer's Disconnect is decoded while the reader still hands over the messages before it
    # (the app is slow): a send in that window must say the peer left, and why.
    key = NodeKey.generate()
    outcome: list[PeerDisconnected] = []
    conns: list[RLPxConnection] = []

    async def handler(conn: RLPxConnection) -> None:
        conns.append(conn)
        with trio.fail_after(10):
            while conn._session.state is not State.CLOSED:
                await trio.sleep(0.01)
        try:
            await conn.send(1, b"\xc0")
        except PeerDisconnected as exc:
            outcome.append(exc)

    port = await nursery.start(lambda task_status: rlpx_serve("127.0.0.1", 0, key, HELLO, handler,
                                                              task_status=task_status))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    s = Session(NodeKey.generate(), HELLO, os.urandom, remote_pubkey=key.pubkey)
    with trio.fail_after(5):
        await handshake_by_hand(stream, s)
    # Fill the 64 messages the connection buffers for its owner first, so that the tail (one more
    # message, then goodbye: two small frames, one segment, one read) is decoded -- the session
    # closes -- while the reader is stuck handing that message over.  Sending all 65 at once raced:
    # a split read left the Disconnect unread behind the blocked reader.
    await stream.send_all(b"".join(s.send_message(0, b"\xc0") for _ in range(64)))
    with trio.fail_after(10):
        while not conns or conns[0]._recv_ch.statistics().current_buffer_used < 64:
            await trio.sleep(0.01)
    await stream.send_all(s.send_message(0, b"\xc0") + s.send_disconnect(DisconnectReason.TOO_MANY_PEERS))
    with trio.fail_after(10):
        while not outcome:
            await trio.sleep(0.01)
    assert outcome[0].by_remote and outcome[0].reason == DisconnectReason.TOO_MANY_PEERS
    await stream.aclose()


async def test_an_uncompressed_disconnect_at_p2p_v5_is_a_goodbye_not_a_breach(nursery: trio.Nursery) -> None:
    # @ethereumjs/devp2p 10 never compresses its Disconnect, whatever the negotiated version.
    server = await EchoServer().start(nursery)
    stream, s = await raw_session(server)
    assert s.snappy and s._codec is not None
    await stream.send_all(s._codec.encode(b"\x01" + rlp.encode(int(DisconnectReason.CLIENT_QUITTING))))
    with trio.fail_after(5):
        while not sample(server.registry, "rlpx_disconnects_total", reason="client_quitting", side="remote"):
            await trio.sleep(0.02)
    assert sample(server.registry, "rlpx_protocol_errors_total", kind="protocol") == 0
    await stream.aclose()
