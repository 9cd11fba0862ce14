"""Drive an RLPx :class:`Session` by hand over a raw socket (tests that send what a real peer wouldn't)."""

from __future__ import annotations

import trio

from v1.rlpx.session import Session, State

__all__ = ["handshake_by_hand"]


async def handshake_by_hand(stream: trio.SocketStream, session: Session) -> None:
    """Auth/ack and Hello until the session is READY; the caller sets the deadline."""
    await stream.send_all(session.initiate())
    while session.state is not State.READY:
        out, _ = session.receive(await stream.receive_some(65536))
        if out:
            await stream.send_all(out)
