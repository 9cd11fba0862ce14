"""The trio shell around :class:`v1.rlpx.session.Session`: sockets, deadlines, keepalive.

``rlpx_connect`` dials, ``rlpx_serve`` listens; both hand out :class:`RLPxConnection`, whose
``receive()`` yields subprotocol messages (base protocol handled here) and whose ``send()`` writes
them.  Every network wait has a deadline (timers from rlpx.md §8); a broken peer ends in a
Disconnect with a reason, a metric, and a closed socket, never an exception escaping the server.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from v1.errors import V1Error
from v1.rlpx.base import Capability, DisconnectReason, Hello, ProtocolError, SharedCapability
from v1.rlpx.enode import Enode
from v1.rlpx.frame import DEFAULT_MAX_FRAME, FrameError, FrameTooLarge, MacMismatch
from v1.rlpx.handshake import HandshakeError
from v1.rlpx.keys import NodeKey
from v1.rlpx.metrics import RLPxMetrics
from v1.rlpx.session import (
    DisconnectReceived,
    HelloParams,
    HelloReceived,
    MessageReceived,
    PingReceived,
    Session,
    State,
)

__all__ = [
    "Capability",
    "DisconnectReason",
    "HelloParams",
    "PeerDisconnected",
    "RLPxConnection",
    "Timeouts",
    "rlpx_connect",
    "rlpx_serve",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timeouts:
    dial: float = 10.0  # TCP connect (ethereumjs' socket timeout)
    handshake: float = 5.0  # crypto handshake (geth)
    hello: float = 10.0  # until the peer's Hello (nim-eth)
    ping_interval: float = 15.0  # our keepalive Ping (geth, ethereumjs)
    idle: float = 30.0  # no frame for this long = dead link (geth frame read timeout)
    write: float = 20.0  # one frame write (geth)
    disconnect_linger: float = 2.0  # wait for the peer to close after our Disconnect


class PeerDisconnected(V1Error):
    """The session ended; ``by_remote`` says whether the peer sent the Disconnect.

    ``cause`` is a metric label that says why, finer than the wire reason: for a session we ended,
    the rule the peer broke (``mac_mismatch``, ``frame_too_large``, ``bad_snappy``, ...), a timer
    (``ping_timeout``, ``write_timeout``) or what the owner passed to
    :meth:`RLPxConnection.disconnect`; ``connection_closed`` / ``connection_lost`` when the
    link went away; the peer's reason name when it sent the Disconnect.
    """

    def __init__(self, reason: DisconnectReason | int, *, by_remote: bool, detail: str = "",
                 cause: str = "") -> None:
        name = reason.name if isinstance(reason, DisconnectReason) else str(reason)
        super().__init__(f"disconnected ({name}{', by peer' if by_remote else ''}){': ' + detail if detail else ''}")
        self.reason = reason
        self.by_remote = by_remote
        self.cause = cause or name.lower()


MAX_PENDING_PONGS = 8  # Pongs carry nothing: beyond a few owed, more answers add nothing for the peer


def _reason(exc: Exception) -> DisconnectReason:
    return exc.reason if isinstance(exc, ProtocolError) else DisconnectReason.BREACH_OF_PROTOCOL


def _kind(exc: Exception) -> str:
    if isinstance(exc, MacMismatch):
        return "mac"
    if isinstance(exc, FrameTooLarge):
        return "oversize"
    if isinstance(exc, HandshakeError):
        return "handshake"
    if isinstance(exc, ProtocolError):
        return "protocol"
    return "frame"


def _cause(exc: Exception) -> str:
    """The fine-grained label of a broken session (PeerDisconnected.cause)."""
    if isinstance(exc, MacMismatch):
        return "mac_mismatch"
    if isinstance(exc, FrameTooLarge):
        return "frame_too_large"
    if isinstance(exc, ProtocolError):
        return exc.kind
    return "malformed_frame"


class RLPxConnection:
    """An established session (Hello exchanged).  Use only inside its context/handler.

    Writers are the owner's :meth:`send`, the keepalive Ping, the Pong answering each Ping and
    :meth:`disconnect`.  All of them go through :meth:`_send_frame`, which encodes a frame only
    while holding the write lock and writes it before releasing it: encoding advances the egress
    keystream and MAC (rlpx.md §4), so encoding order must be wire order.  (A Pong encoded by the
    reader and written later let a keepalive Ping overtake it under load; the peer saw a MAC
    mismatch and disconnected us with BREACH_OF_PROTOCOL.)  The reader never waits for the
    write lock itself: Pongs are written by their own task, so two peers each blocked writing
    to the other still read, and never deadlock on full socket buffers.
    """

    def __init__(self, stream: trio.SocketStream, session: Session, metrics: RLPxMetrics,
                 timeouts: Timeouts, remote_address: tuple[str, int], *, inbound: bool) -> None:
        self._stream = stream
        self._session = session
        self._metrics = metrics
        self._timeouts = timeouts
        self._write_lock = trio.Lock()
        self._send_ch, self._recv_ch = trio.open_memory_channel[tuple[int, bytes, int]](64)
        self._pong_send, self._pong_recv = trio.open_memory_channel[None](MAX_PENDING_PONGS)
        self._backlog: list[tuple[int, bytes, int]] = []  # messages pipelined behind the Hello
        self._closed: PeerDisconnected | None = None
        self._eof = trio.Event()
        self._reader: trio.lowlevel.Task | None = None
        self.remote_address = remote_address
        self.inbound = inbound

    @property
    def remote_pubkey(self) -> bytes:
        assert self._session.remote_pubkey is not None
        return self._session.remote_pubkey

    @property
    def remote_hello(self) -> Hello:
        assert self._session.remote_hello is not None
        return self._session.remote_hello

    @property
    def shared_capabilities(self) -> tuple[SharedCapability, ...]:
        return self._session.shared

    @property
    def remote_enode(self) -> str:
        host, port = self.remote_address
        if self.inbound:  # their listening port is what they advertised (0 = not listening)
            port = self.remote_hello.listen_port or port
        return str(Enode(self.remote_pubkey, host, port))

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def ended(self) -> PeerDisconnected | None:
        """How the session ended (reason, side, cause), or None while it is open."""
        return self._closed

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        with trio.fail_after(self._timeouts.write):
            await self._stream.send_all(data)
        self._metrics.bytes.labels("out").inc(len(data))

    async def _send_frame(self, encode: Callable[[], bytes]) -> None:
        """Encode one frame and write it, both under the write lock (see the class doc).

        A frame that was encoded but not completely written (write timeout, cancellation) leaves
        the peer's ingress keystream and MAC behind ours for good: the session ends with it.
        """
        async with self._write_lock:
            if self._closed is not None:  # re-checked under the lock: a Disconnect may have won
                raise self._closed
            # Let a pending cancellation strike before the frame exists, not half-way through it.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                frame = encode()
            except ProtocolError as exc:
                # The session closed under us: the reader has decoded the peer's Disconnect but
                # is still handing over the messages that came before it.
                theirs = self._session.remote_disconnect
                self._fail(PeerDisconnected(DisconnectReason.REQUESTED, by_remote=False, detail=str(exc))
                           if theirs is None else PeerDisconnected(theirs, by_remote=True))
                raise self._closed from None  # type: ignore[misc]
            try:
                await self._write(frame)
            except trio.TooSlowError:
                self._fail(PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=False, detail="write timeout",
                                            cause="write_timeout"))
                raise self._closed from None  # type: ignore[misc]
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=False,
                                            detail=str(exc) or type(exc).__name__, cause="connection_lost"))
                raise self._closed from None  # type: ignore[misc]
            except BaseException:  # cancelled mid-frame: nothing valid can follow it on this stream
                self._fail(PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=False,
                                            detail="write interrupted", cause="write_interrupted"))
                raise
        self._metrics.frames.labels("out").inc()

    async def send(self, code: int, msg_data: bytes) -> None:
        """Send a subprotocol message (code relative to the first shared capability)."""
        if self._closed is not None:
            raise self._closed
        await self._send_frame(lambda: self._session.send_message(code, msg_data))

    async def receive(self) -> tuple[int, bytes]:
        """Next subprotocol message; raises :class:`PeerDisconnected` when the session ends."""
        code, data, _size = await self.receive_sized()
        return code, data

    async def receive_sized(self) -> tuple[int, bytes, int]:
        """Like :meth:`receive`, plus the message's wire size (for byte-rate limits)."""
        try:
            return await self._recv_ch.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            assert self._closed is not None
            raise self._closed from None

    async def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED, *, cause: str = "") -> None:
        """Send Disconnect, half-close, give the peer ``disconnect_linger`` s to close, then close.

        ``cause`` labels why (see :class:`PeerDisconnected`); it defaults to the reason's name.
        Closing at once with unread bytes in our receive buffer would make the kernel send a RST,
        and a RST can discard the Disconnect frame before the peer reads it (rlpx.md §5.1).
        """
        if self._closed is None:
            self._fail(PeerDisconnected(reason, by_remote=False, cause=cause))
            with trio.CancelScope(shield=True):
                # The Disconnect frame is encoded under the lock too, after any frame in flight.
                async with self._write_lock:
                    with trio.move_on_after(1.0):
                        try:
                            await self._write(self._session.send_disconnect(reason))
                            await self._stream.send_eof()
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError):
                            pass
                with trio.move_on_after(self._timeouts.disconnect_linger):
                    if self._reader is not None and self._reader is not trio.lowlevel.current_task():
                        await self._eof.wait()
                    else:
                        await self._drain()
        await self._close_socket()

    async def _drain(self) -> None:
        try:
            while await self._stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.BusyResourceError):
            pass
        self._eof.set()

    async def _close_socket(self) -> None:
        with trio.CancelScope(shield=True):
            await self._stream.aclose()

    def _fail(self, exc: PeerDisconnected) -> None:
        if self._closed is None:
            self._closed = exc
            self._metrics.disconnects.labels(
                exc.reason.name.lower() if isinstance(exc.reason, DisconnectReason) else str(exc.reason),
                "remote" if exc.by_remote else "local").inc()
        self._send_ch.close()

    def _owe_pong(self) -> None:
        try:
            self._pong_send.send_nowait(None)
        except trio.WouldBlock:
            pass  # MAX_PENDING_PONGS already owed: this Ping is answered by one of them

    async def _run(self) -> None:
        """Reader + keepalive + ponger; returns when the session is over (socket closed)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keepalive)
            nursery.start_soon(self._ponger)
            try:
                await self._read_loop()
            finally:
                nursery.cancel_scope.cancel()

    async def _keepalive(self) -> None:
        while self._closed is None:
            await trio.sleep(self._timeouts.ping_interval)
            try:
                await self._send_frame(self._session.send_ping)
            except PeerDisconnected:
                return

    async def _ponger(self) -> None:
        # Answer each Ping at once (rlpx.md §8), in its own task: see the class doc.
        async for _ in self._pong_recv:
            try:
                await self._send_frame(self._session.send_pong)
            except PeerDisconnected:
                return

    async def _read_loop(self) -> None:
        self._reader = trio.lowlevel.current_task()
        reason: DisconnectReason = DisconnectReason.TCP_ERROR
        cancelled = False
        try:
            backlog, self._backlog = self._backlog, []
            for item in backlog:
                await self._send_ch.send(item)
            while True:
                data = b""
                with trio.move_on_after(self._timeouts.idle):
                    data = await self._stream.receive_some(65536)
                    if not data:
                        self._eof.set()
                        self._fail(PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=True, detail="EOF",
                                                    cause="connection_closed"))
                        return
                if self._closed is not None:  # we disconnected: read on until the peer closes
                    if not data:
                        return
                    continue
                if not data:
                    reason = DisconnectReason.PING_TIMEOUT
                    raise ProtocolError("no frame within the idle timeout", DisconnectReason.PING_TIMEOUT,
                                        kind="ping_timeout")
                self._metrics.bytes.labels("in").inc(len(data))
                out, events = self._session.receive(data)
                assert not out, "a READY session returns frames as events, never bytes"
                for ev in events:
                    if isinstance(ev, MessageReceived):
                        self._metrics.frames.labels("in").inc()
                        await self._send_ch.send((ev.code, ev.data, ev.size))
                    elif isinstance(ev, PingReceived):
                        self._metrics.frames.labels("in").inc()
                        self._owe_pong()
                    elif isinstance(ev, DisconnectReceived):
                        self._fail(PeerDisconnected(ev.reason, by_remote=True))
                        return
        except (ProtocolError, FrameError) as exc:
            reason = _reason(exc)
            self._metrics.protocol_errors.labels(_kind(exc)).inc()
            log.info("peer %s broke the protocol: %s", self.remote_address, exc)
            await self.disconnect(reason, cause=_cause(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError) as exc:
            self._fail(PeerDisconnected(reason, by_remote=False, detail=str(exc) or type(exc).__name__,
                                        cause="connection_lost"))
        except trio.Cancelled:
            cancelled = True  # shutdown: the owner sends Disconnect(CLIENT_QUITTING) and closes
            raise
        finally:
            self._eof.set()
            if not cancelled:
                self._send_ch.close()
                if self._closed is None:
                    self._fail(PeerDisconnected(reason, by_remote=False, cause="connection_lost"))
                await self._close_socket()


async def _establish(stream: trio.SocketStream, session: Session, metrics: RLPxMetrics, timeouts: Timeouts,
                     remote_address: tuple[str, int], *, inbound: bool) -> RLPxConnection:
    """Handshake + Hello under deadlines; leftover bytes stay in the session's frame buffer.

    Nothing else writes yet, so the bytes ``Session.receive`` returns go out at once.  Messages
    and Pings pipelined behind the peer's Hello are kept for the connection's reader and ponger.
    """
    conn = RLPxConnection(stream, session, metrics, timeouts, remote_address, inbound=inbound)
    if not inbound:
        with trio.fail_after(timeouts.handshake):
            await stream.send_all(session.initiate())
    deadline = trio.current_time() + timeouts.handshake
    while session.state is not State.READY:
        if session.state is State.HELLO:
            deadline = min(deadline, trio.current_time() + timeouts.hello)
        with trio.fail_after(max(0.0, deadline - trio.current_time())):
            data = await stream.receive_some(65536)
        if not data:
            raise PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=True, detail="EOF during handshake")
        metrics.bytes.labels("in").inc(len(data))
        out, events = session.receive(data)
        if out:
            with trio.fail_after(timeouts.handshake):
                await stream.send_all(out)
        for ev in events:
            if isinstance(ev, DisconnectReceived):
                name = ev.reason.name.lower() if isinstance(ev.reason, DisconnectReason) else str(ev.reason)
                metrics.disconnects.labels(name, "remote").inc()
                raise PeerDisconnected(ev.reason, by_remote=True, detail="during Hello")
            if isinstance(ev, HelloReceived):
                deadline = float("inf")
            if isinstance(ev, MessageReceived):  # pipelined right behind the Hello
                conn._backlog.append((ev.code, ev.data, ev.size))
            if isinstance(ev, PingReceived):
                conn._owe_pong()
        state: State = session.state  # re-read: the events above moved it (mypy keeps the old narrowing)
        if state is State.READY:
            break
    return conn


def _being_cancelled() -> bool:
    """Whether the calling task is being cancelled.

    ``except trio.Cancelled`` misses it when a handler's own nursery wrapped the Cancelled in an
    ExceptionGroup (strict exception groups); trio reports -inf as the deadline of a cancelled task.
    """
    return trio.current_effective_deadline() == -math.inf


async def _refuse(stream: trio.SocketStream, session: Session, reason: DisconnectReason) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.send_all(session.send_disconnect(reason))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    with trio.CancelScope(shield=True):
        await stream.aclose()


async def _open(stream: trio.SocketStream, session: Session, metrics: RLPxMetrics, timeouts: Timeouts,
                remote_address: tuple[str, int], *, inbound: bool) -> RLPxConnection:
    """:func:`_establish`, or: the failure counted (``connect_failure`` / ``accept_failure``), the
    socket closed (after a Disconnect if the peer broke the protocol), and PeerDisconnected raised."""
    failures = metrics.accept_failure if inbound else metrics.connect_failure
    try:
        return await _establish(stream, session, metrics, timeouts, remote_address, inbound=inbound)
    except (ProtocolError, HandshakeError, FrameError) as exc:
        failures.labels(_kind(exc)).inc()
        if inbound:
            log.info("inbound %s refused: %s", remote_address, exc)
        await _refuse(stream, session, _reason(exc))
        raise PeerDisconnected(DisconnectReason.BREACH_OF_PROTOCOL, by_remote=False, detail=str(exc)) from None
    except (trio.TooSlowError, OSError, trio.BrokenResourceError, PeerDisconnected) as exc:
        if isinstance(exc, PeerDisconnected):  # the peer's Disconnect (or EOF) during the handshake
            failures.labels("io" if inbound else "disconnected").inc()
        else:
            failures.labels("timeout" if isinstance(exc, trio.TooSlowError) else "io").inc()
        with trio.CancelScope(shield=True):
            await stream.aclose()
        if isinstance(exc, PeerDisconnected):
            raise
        raise PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=False, detail=str(exc) or "timeout") from None


@asynccontextmanager
async def _running(conn: RLPxConnection, metrics: RLPxMetrics) -> AsyncIterator[RLPxConnection]:
    """The session of an established connection, dialled or accepted alike: its reader, keepalive
    and ponger run while the owner's body does; on exit, however the body ended, Disconnect
    (CLIENT_QUITTING if the node is shutting down, else REQUESTED) and close."""
    metrics.connected_peers.inc()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._run)
            reason = DisconnectReason.REQUESTED
            try:
                yield conn
            except BaseException:
                if _being_cancelled():  # the node is shutting down (SIGTERM / Ctrl-C)
                    reason = DisconnectReason.CLIENT_QUITTING
                raise
            finally:
                await conn.disconnect(reason)
                nursery.cancel_scope.cancel()
    finally:
        metrics.connected_peers.dec()


@asynccontextmanager
async def rlpx_connect(
    enode: Enode | str,
    node_key: NodeKey,
    hello: HelloParams,
    *,
    metrics: RLPxMetrics | None = None,
    timeouts: Timeouts = Timeouts(),
    max_frame_size: int = DEFAULT_MAX_FRAME,
    eip8: bool = True,
) -> AsyncIterator[RLPxConnection]:
    """Dial ``enode``, run handshake + Hello, yield the connection; Disconnect on exit."""
    target = Enode.parse(enode) if isinstance(enode, str) else enode
    m = metrics or RLPxMetrics()
    try:
        with trio.fail_after(timeouts.dial):
            stream = await trio.open_tcp_stream(target.host, target.port)
    except (OSError, trio.TooSlowError) as exc:
        m.connect_failure.labels("dial").inc()
        raise PeerDisconnected(DisconnectReason.TCP_ERROR, by_remote=False, detail=f"dial: {exc}") from None
    session = Session(node_key, hello, secrets.token_bytes, remote_pubkey=target.pubkey,
                      max_frame_size=max_frame_size, max_message_size=max_frame_size, eip8=eip8)
    conn = await _open(stream, session, m, timeouts, (target.host, target.port), inbound=False)
    m.connect_success.inc()
    async with _running(conn, m):
        yield conn


async def rlpx_serve(
    host: str,
    port: int,
    node_key: NodeKey,
    hello: HelloParams,
    handler: Callable[[RLPxConnection], Awaitable[None]],
    *,
    max_peers: int = 50,
    metrics: RLPxMetrics | None = None,
    timeouts: Timeouts = Timeouts(),
    max_frame_size: int = DEFAULT_MAX_FRAME,
    admit: Callable[[bytes], DisconnectReason | None] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen; run ``handler(conn)`` per established inbound session.

    ``admit(remote_pubkey)`` may refuse a peer (e.g. ALREADY_CONNECTED).  Sessions over
    ``max_peers`` are refused with TOO_MANY_PEERS after the handshake.  Started value: the port.
    """
    m = metrics or RLPxMetrics()
    active = 0
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.debug("rlpx listening on %s:%d", host, bound)

    async def serve_one(stream: trio.SocketStream) -> None:
        nonlocal active
        try:
            peer = stream.socket.getpeername()
            addr = (str(peer[0]), int(peer[1]))
        except OSError:
            await stream.aclose()
            return
        session = Session(node_key, hello, secrets.token_bytes, max_frame_size=max_frame_size,
                          max_message_size=max_frame_size)
        try:
            conn = await _open(stream, session, m, timeouts, addr, inbound=True)
        except PeerDisconnected:
            return  # counted and closed
        refusal = DisconnectReason.TOO_MANY_PEERS if active >= max_peers else None
        if refusal is None and admit is not None:
            refusal = admit(conn.remote_pubkey)
        if refusal is not None:
            m.accept_failure.labels(refusal.name.lower()).inc()
            await conn.disconnect(refusal)
            return
        m.accept_success.inc()
        active += 1
        try:
            async with _running(conn, m):
                await handler(conn)
        except PeerDisconnected:
            pass
        except Exception:  # a bug in one peer's handler must not take the listener down
            log.exception("handler for %s failed", addr)
            m.protocol_errors.labels("handler_bug").inc()
        finally:
            active -= 1

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_one, listeners)
        task_status.started(bound)
