"""RLPx interop with a third-party stack: @ethereumjs/devp2p 10.0.0 (EIP-8 only, p2p v5 + snappy).

Handshake, Hello and a raw waku Status each way, with our node dialing and being dialed.
"""

from __future__ import annotations

import rlp
import trio

from tests.helpers.jsproc import JsPeer
from tests.helpers.net import free_port
from v1.rlpx.base import Capability
from v1.rlpx.enode import Enode
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams
from v1.rlpx.transport import RLPxConnection, rlpx_connect, rlpx_serve

WAKU = Capability("waku", 1, 128)
HELLO = HelloParams("waku-bridge/test", (WAKU,), listen_port=0)
JS_KEY = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291"
OUR_STATUS = rlp.encode([[0, bytes.fromhex("3f60624dd2f1a9fc")], [1, b"\xff" * 64], [2, b""], [3, b""]])


async def _exchange(conn: RLPxConnection, js: JsPeer) -> None:
    assert conn.remote_hello.version == 5  # ethereumjs always advertises p2p v5 -> snappy on
    assert ("waku", 1) in conn.remote_hello.capabilities
    code, data = await conn.receive()
    assert code == 0  # their waku Status
    status = rlp.decode(data)
    assert [int.from_bytes(k, "big") for k, _ in status] == [0, 1, 2, 3]
    assert status[1][1] == b"\xff" * 64
    await conn.send(0, OUR_STATUS)
    ev = await js.wait_event("waku_status")
    assert bytes.fromhex(ev[0]["hex"]) == OUR_STATUS
    # one raw Messages packet each way (an empty envelope list is valid RLP for the harness)
    await conn.send(1, rlp.encode([]))
    await js.wait_event("waku_message", code=1)
    peer = ev[0]["peer"]
    await js.request("send", peer=peer, code=1, hex=rlp.encode([]).hex())
    with trio.fail_after(10):
        code, data = await conn.receive()
    assert (code, data) == (1, b"\xc0")


async def test_we_dial_ethereumjs(nursery: trio.Nursery) -> None:
    port = free_port()
    js = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    try:
        reply = await js.request("start", privateKey=JS_KEY, port=port)
        enode = Enode.parse(reply["enode"])
        async with rlpx_connect(enode, NodeKey.generate(), HELLO) as conn:
            added = await js.wait_event("peer_added")
            assert added[0]["hello"]["caps"] == [["waku", 1]]
            assert added[0]["hello"]["clientId"] == "waku-bridge/test"
            await _exchange(conn, js)
    finally:
        await js.aclose()


async def test_ethereumjs_dials_us(nursery: trio.Nursery) -> None:
    key = NodeKey.generate()
    got: trio.MemorySendChannel[RLPxConnection]
    got, got_recv = trio.open_memory_channel[RLPxConnection](1)
    done = trio.Event()

    async def handler(conn: RLPxConnection) -> None:
        await got.send(conn)
        await done.wait()

    port = await nursery.start(rlpx_serve, "127.0.0.1", 0, key, HELLO, handler)
    js = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    try:
        await js.request("start", privateKey=JS_KEY)
        await js.request("connect", enode=str(Enode(key.pubkey, "127.0.0.1", port)))
        with trio.fail_after(10):
            conn = await got_recv.receive()
        assert conn.remote_pubkey.hex().startswith("ca634cae")  # EIP-8 static key B
        await _exchange(conn, js)
        done.set()
        removed = await js.wait_event("peer_removed")
        assert removed[0]["reason"] == 0  # our Disconnect(REQUESTED) reached them
    finally:
        done.set()
        await js.aclose()
