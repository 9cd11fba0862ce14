"""Envelopes per second through one Waku v1 node (receive -> validate -> pool -> forward).

Three real processes' worth of roles on loopback in one trio loop: a sender connected over RLPx
pushes pre-mined 300 B envelopes in Messages packets of 50; the node under test validates
(expiry, size, PoW 0.002, bloom), pools and forwards them on its 300 ms tick to a receiver, which
counts them.  The figure is envelopes delivered to the receiver per second of wall time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from v1.node import WAKU, V1Node, V1NodeConfig
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams
from v1.rlpx.transport import rlpx_connect
from v1.waku.envelope import Envelope
from v1.waku.messages import WakuCode, decode_messages, encode_messages
from v1.waku.pow import mine_smallest_nonce
from v1.waku.status import StatusOptions, encode_status


def _envelopes(n: int, size: int) -> list[Envelope]:
    expiry = int(time.time()) + 120
    out = []
    for _ in range(n):
        data = os.urandom(size)
        nonce = mine_smallest_nonce(expiry, 120, b"\x1a\x2b\x3c\x4d", data, 0.002)
        assert nonce is not None
        out.append(Envelope(expiry, 120, b"\x1a\x2b\x3c\x4d", data, nonce))
    return out


async def _run(n: int, size: int, batch: int) -> dict[str, Any]:
    envs = _envelopes(n, size)
    node = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, pool_capacity=n + 10,
                               inbound_capacity=n + 10), CollectorRegistry())
    hello = HelloParams("bench", (WAKU,))
    status = encode_status(StatusOptions(pow_requirement=0.0))
    received = 0
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)

        async def drain() -> None:  # the bridge would consume these; here we just empty the channel
            async for _ in node.inbound():
                pass

        nursery.start_soon(drain)
        async with rlpx_connect(node.enode, NodeKey.generate(), hello) as rx, \
                rlpx_connect(node.enode, NodeKey.generate(), hello) as tx:
            for c in (rx, tx):
                await c.send(WakuCode.STATUS, status)
                await c.receive()

            async def count() -> None:
                nonlocal received
                while received < n:
                    code, data = await rx.receive()
                    if code == WakuCode.MESSAGES:
                        received += len(decode_messages(data))
                done.set()

            nursery.start_soon(count)
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                await tx.send(WakuCode.MESSAGES, encode_messages(envs[i:i + batch]))
            with trio.fail_after(300):
                await done.wait()
            elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return {"envelopes": n, "payload": size, "batch": batch, "seconds": round(elapsed, 2),
            "envelopes_per_s": round(n / elapsed)}


def main() -> Iterator[dict[str, Any]]:
    yield trio.run(_run, 20_000, 300, 50)


if __name__ == "__main__":
    for r in main():
        print(r)
