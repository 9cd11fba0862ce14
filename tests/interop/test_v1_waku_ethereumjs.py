"""waku/1 interop with @ethereumjs/devp2p: Status exchange and an envelope each way, hashes equal.

Our full V1Node on one side, the third-party RLPx stack (with the harness' waku/1 capability) on
the other, once with us dialing and once with them dialing.
"""

from __future__ import annotations

import os

import rlp
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.envelopes import mined_envelope
from tests.helpers.jsproc import JsPeer
from tests.helpers.net import free_port
from v1.node import V1Node, V1NodeConfig
from v1.waku.messages import encode_messages
from v1.waku.status import decode_status

JS_KEY = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291"


async def _exchange(node: V1Node, js: JsPeer) -> None:
    added = (await js.wait_event("peer_added"))[0]
    status = decode_status(bytes.fromhex((await js.wait_event("waku_status"))[0]["hex"]))
    assert status.pow_requirement == 0.002 and status.bloom == b"\xff" * 64 and status.light_node is False
    with trio.fail_after(10):
        while not node.peers():
            await trio.sleep(0.05)
    assert node.peers()[0].pow_requirement == 0.001  # the harness advertises 0.001
    # v1 node -> ethereumjs
    ours = mined_envelope(b"from python " + os.urandom(8))
    assert (await node.post(ours)).accepted
    got = await js.wait_event("envelope", timeout=10)
    assert bytes.fromhex(got[0]["hex"]) == ours.encode()
    assert got[0]["hash"] == ours.hash.hex()
    # ethereumjs -> v1 node
    theirs = mined_envelope(b"from ethereumjs " + os.urandom(8))
    reply = await js.request("send", peer=added["peer"], code=1, hex=encode_messages([theirs]).hex())
    with trio.fail_after(10):
        rec = await node.inbound().receive()
    assert rec.envelope == theirs
    assert reply["hashes"] == [rec.envelope.hash.hex()]
    assert rlp.decode(bytes.fromhex(got[0]["hex"]))[2] == b"\x1a\x2b\x3c\x4d"


async def test_v1_node_dials_ethereumjs(nursery: trio.Nursery) -> None:
    port = free_port()
    js = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    try:
        enode = (await js.request("start", privateKey=JS_KEY, port=port, pow=0.001))["enode"]
        node = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=(enode,),
                                   forward_interval=0.1), CollectorRegistry())
        await nursery.start(node.run)
        await _exchange(node, js)
    finally:
        await js.aclose()


async def test_ethereumjs_dials_v1_node(nursery: trio.Nursery) -> None:
    node = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1), CollectorRegistry())
    await nursery.start(node.run)
    js = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    try:
        await js.request("start", privateKey=JS_KEY, pow=0.001)
        await js.request("connect", enode=node.enode)
        await _exchange(node, js)
    finally:
        await js.aclose()
