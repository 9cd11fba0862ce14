"""One RLPx connection as a pure state machine: handshake → Hello exchange → messages.

``Session.receive(data)`` returns ``(bytes to send, events)``; the ``send_*`` methods return bytes
to write.  The trio shell (transport.py) only moves bytes and runs timers.

Every frame we encode advances the egress AES-CTR keystream and MAC sponge (rlpx.md §4), so the
bytes of frames must reach the wire in exactly the order the frames were encoded.  ``receive``
therefore returns bytes only during the handshake and Hello (when nothing else writes); once
READY, a Ping becomes a :class:`PingReceived` event and the shell encodes the Pong with
:meth:`Session.send_pong` at the moment it writes it, serialised with every other writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto

import rlp

from v1.rlpx.base import (
    BASE_PROTOCOL_LENGTH,
    Capability,
    DisconnectReason,
    Hello,
    P2PCode,
    ProtocolError,
    SharedCapability,
    decode_disconnect,
    decode_hello,
    encode_disconnect,
    encode_hello,
    shared_capabilities,
    snappy_compress,
    snappy_decompress,
)
from v1.rlpx.frame import DEFAULT_MAX_FRAME, FrameCodec
from v1.rlpx.handshake import HandshakeError, Initiator, Recipient, Rng
from v1.rlpx.keys import NodeKey

__all__ = [
    "DisconnectReceived",
    "Event",
    "HandshakeComplete",
    "HelloParams",
    "HelloReceived",
    "MessageReceived",
    "PingReceived",
    "PongReceived",
    "Session",
    "State",
]

_EMPTY_LIST = b"\xc0"
MAX_EARLY_FRAMES = 16


@dataclass(frozen=True, slots=True)
class HelloParams:
    client_id: str
    capabilities: tuple[Capability, ...]
    listen_port: int = 0
    p2p_version: int = 5


class State(Enum):
    HANDSHAKE = auto()
    HELLO = auto()
    READY = auto()
    CLOSED = auto()


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    remote_pubkey: bytes


@dataclass(frozen=True, slots=True)
class HelloReceived:
    hello: Hello
    shared: tuple[SharedCapability, ...]
    snappy: bool


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A subprotocol message; ``code`` is relative to the first shared capability."""

    code: int
    data: bytes
    size: int  # wire size of the frame data (after compression), for byte-rate limits


@dataclass(frozen=True, slots=True)
class PingReceived:
    """Answer with :meth:`Session.send_pong`, encoded when it is written (see the module doc)."""


@dataclass(frozen=True, slots=True)
class PongReceived:
    pass


@dataclass(frozen=True, slots=True)
class DisconnectReceived:
    reason: DisconnectReason | int


Event = HandshakeComplete | HelloReceived | MessageReceived | PingReceived | PongReceived | DisconnectReceived


@dataclass(slots=True)
class Session:
    node_key: NodeKey
    hello: HelloParams
    rng: Rng
    remote_pubkey: bytes | None = None  # known when we dial
    max_frame_size: int = DEFAULT_MAX_FRAME
    max_message_size: int = DEFAULT_MAX_FRAME
    eip8: bool = True
    state: State = State.HANDSHAKE
    remote_hello: Hello | None = None
    shared: tuple[SharedCapability, ...] = ()
    snappy: bool = False
    remote_disconnect: DisconnectReason | int | None = None  # the reason, once the peer sent Disconnect
    _initiator: Initiator | None = field(default=None, repr=False)
    _recipient: Recipient | None = field(default=None, repr=False)
    _codec: FrameCodec | None = field(default=None, repr=False)
    _early: list[bytes] = field(default_factory=list, repr=False)

    @property
    def is_initiator(self) -> bool:
        return self._initiator is not None

    def initiate(self) -> bytes:
        """Dialer: the auth packet to send first."""
        assert self.remote_pubkey is not None and self._recipient is None
        self._initiator = Initiator(self.node_key.secret, self.remote_pubkey, self.rng, eip8=self.eip8)
        return self._initiator.auth_wire

    def receive(self, data: bytes) -> tuple[bytes, list[Event]]:
        """Feed wire bytes.  Raises ProtocolError/HandshakeError/FrameError on a broken peer."""
        if self.state is State.CLOSED:
            return b"", []
        out = b""
        events: list[Event] = []
        if self.state is State.HANDSHAKE:
            if self._initiator is not None:
                done = self._initiator.feed(data)
                if done is None:
                    return b"", []
                secrets, data = done
            else:
                if self._recipient is None:
                    self._recipient = Recipient(self.node_key.secret, self.rng)
                res = self._recipient.feed(data)
                if res is None:
                    return b"", []
                ack, secrets, data = res
                out += ack
                self.remote_pubkey = secrets.remote_pubkey
            if self.remote_pubkey == self.node_key.pubkey:
                raise ProtocolError("connected to self", DisconnectReason.CONNECTED_TO_SELF, kind="connected_to_self")
            self._codec = FrameCodec(secrets, max_frame_size=self.max_frame_size)
            self.state = State.HELLO
            events.append(HandshakeComplete(secrets.remote_pubkey))
            # Both sides send Hello as their first frame, never compressed (rlpx.md §5).
            out += self._frame(P2PCode.HELLO, self._hello_payload(), compress=False)
            if not data:
                return out, events
        assert self._codec is not None
        for frame in self._codec.feed(data):
            more, ev = self._on_frame(frame)
            out += more
            events.extend(ev)
            if self.state is State.CLOSED:
                break
        return out, events

    def _hello_payload(self) -> bytes:
        return encode_hello(Hello(self.hello.p2p_version, self.hello.client_id,
                                  tuple((c.name, c.version) for c in self.hello.capabilities),
                                  self.hello.listen_port, self.node_key.pubkey))

    def _on_frame(self, frame: bytes) -> tuple[bytes, list[Event]]:
        try:
            msg_id_item, rest = _split_id(frame)
        except ProtocolError:
            raise
        code = msg_id_item
        payload = frame[len(frame) - len(rest):]
        if self.state is State.HELLO:
            if code == P2PCode.DISCONNECT:
                self.state = State.CLOSED
                self.remote_disconnect = decode_disconnect(self._maybe_decompress(payload, hello=True))
                return b"", [DisconnectReceived(self.remote_disconnect)]
            if code != P2PCode.HELLO:
                # @ethereumjs/devp2p, as initiator, sends its Hello on the next tick after the
                # ack, so a Hello we pipelined with our ack makes it send its subprotocol Status
                # *before* its own Hello.  Keep a few such frames and process them after Hello.
                if code >= BASE_PROTOCOL_LENGTH and len(self._early) < MAX_EARLY_FRAMES:
                    self._early.append(frame)
                    return b"", []
                raise ProtocolError(f"message {code:#x} before Hello", kind="before_hello")
            hello = decode_hello(payload)
            if hello.node_id != self.remote_pubkey:
                raise ProtocolError("Hello node id differs from the handshake key",
                                    DisconnectReason.UNEXPECTED_IDENTITY, kind="unexpected_identity")
            self.remote_hello = hello
            self.shared = shared_capabilities(self.hello.capabilities, hello.capabilities)
            if not self.shared:
                raise ProtocolError("no shared capability", DisconnectReason.USELESS_PEER, kind="useless_peer")
            self.snappy = hello.version >= 5 and self.hello.p2p_version >= 5
            self.state = State.READY
            out, events = b"", list[Event]([HelloReceived(hello, self.shared, self.snappy)])
            early, self._early = self._early, []
            for f in early:
                more, ev = self._on_frame(f)
                out += more
                events.extend(ev)
            return out, events
        if code == P2PCode.DISCONNECT:
            # @ethereumjs/devp2p 10 sends Disconnect *uncompressed* even at p2p v5 (its own reader
            # retries both ways; rlpx.md §7).  Be as lenient: the session ends either way, and
            # calling a peer's goodbye "bad snappy" would count a breach that never happened.
            self.state = State.CLOSED
            try:
                data = self._maybe_decompress(payload)
            except ProtocolError:
                data = payload
            self.remote_disconnect = decode_disconnect(data)
            return b"", [DisconnectReceived(self.remote_disconnect)]
        data = self._maybe_decompress(payload)
        if code == P2PCode.PING:
            return b"", [PingReceived()]
        if code == P2PCode.PONG:
            return b"", [PongReceived()]
        if code == P2PCode.HELLO:
            raise ProtocolError("second Hello", kind="second_hello")
        if code < BASE_PROTOCOL_LENGTH:
            return b"", []  # reserved p2p ids: ignore
        first = self.shared[0].offset
        last = self.shared[-1].offset + self.shared[-1].length
        if not first <= code < last:
            raise ProtocolError(f"message id {code:#x} outside the shared capabilities", kind="bad_message_id")
        return b"", [MessageReceived(code - first, data, len(payload))]

    def _maybe_decompress(self, payload: bytes, *, hello: bool = False) -> bytes:
        if not self.snappy or hello:
            if len(payload) > self.max_message_size:
                raise ProtocolError("message too large", kind="message_too_large")
            return payload
        return snappy_decompress(payload, self.max_message_size)

    def _frame(self, code: int, data: bytes, *, compress: bool = True) -> bytes:
        assert self._codec is not None
        if compress and self.snappy:
            data = snappy_compress(data)
        return self._codec.encode(rlp.encode(code) + data)

    def send_message(self, code: int, data: bytes) -> bytes:
        """A subprotocol message; ``code`` relative to the first shared capability."""
        if self.state is not State.READY:
            raise ProtocolError("session not ready", kind="not_ready")
        return self._frame(self.shared[0].offset + code, data)

    def send_ping(self) -> bytes:
        if self.state is not State.READY:
            raise ProtocolError("session not ready", kind="not_ready")
        return self._frame(P2PCode.PING, _EMPTY_LIST)

    def send_pong(self) -> bytes:
        """The answer to a :class:`PingReceived`; encode it only when it is about to be written."""
        if self.state is not State.READY:
            raise ProtocolError("session not ready", kind="not_ready")
        return self._frame(P2PCode.PONG, _EMPTY_LIST)

    def send_disconnect(self, reason: int) -> bytes:
        """Disconnect frame (empty if no frame codec yet); the session is closed afterwards."""
        if self._codec is None or self.state is State.CLOSED:
            self.state = State.CLOSED
            return b""
        # Before Hello completes, snappy is not on; afterwards it applies to Disconnect too.
        frame = self._frame(P2PCode.DISCONNECT, encode_disconnect(reason), compress=self.state is State.READY)
        self.state = State.CLOSED
        return frame


def _split_id(frame: bytes) -> tuple[int, bytes]:
    """frame_data = rlp(msg_id) ‖ msg_data."""
    if not frame:
        raise ProtocolError("empty frame")
    b0 = frame[0]
    if b0 < 0x80:
        return b0, frame[1:]
    if b0 == 0x80:
        return 0, frame[1:]
    if 0x81 <= b0 <= 0x88 and len(frame) > b0 - 0x80:
        n = b0 - 0x80
        raw = frame[1:1 + n]
        if raw[0] == 0 or (n == 1 and raw[0] < 0x80):
            raise ProtocolError("non-canonical message id", kind="bad_message_id")
        return int.from_bytes(raw, "big"), frame[1 + n:]
    raise ProtocolError("malformed message id", kind="bad_message_id")


_ = HandshakeError  # re-exported for the shell's except clauses
