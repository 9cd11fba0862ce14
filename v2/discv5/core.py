"""The discv5 protocol core: sessions, the WHOAREYOU handshake, requests and answers (pure).

Events in, events out: :meth:`Discv5Core.datagram` takes one UDP datagram with its source address
and ``now``; :meth:`request` starts a call; :meth:`tick` expires calls and challenges.  Each returns
a list of outputs (:class:`Send`, :class:`CallDone`, :class:`CallFailed`, :class:`NodeContact`,
:class:`Dropped`).  Randomness (nonces, masking IVs, id-nonces, ephemeral keys, request ids) comes
from the ``rng`` passed in.  Following discv5-theory.md "Handshake Steps" and go-ethereum
p2p/discover/v5_udp.go + v5wire/session.go:

* State is per remote *(node id, "ip:port")* (geth ``sessionID``); the session cache is an LRU.
* A request to a remote without a session goes out as a flag-0 packet with random content; the
  remote answers WHOAREYOU with our nonce, we answer with a handshake packet carrying the same
  request.  While that is in flight further requests to the remote wait in a queue (nim-eth
  ``maxQueuedRequestsPerPeer``), so one challenge serves them all.
* A packet we cannot decrypt is answered with a fresh WHOAREYOU (go-discover, which go-waku runs,
  also sends a fresh one each time); stored challenges expire after ``handshake_timeout``.
* Nonces are ``uint32 counter ‖ 8 random bytes`` (geth ``generateNonce``); a nonce seen twice in
  one session is a replay and dropped.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from coincurve import PrivateKey

from v2.discv5.crypto import derive_keys, id_sign, id_verify
from v2.discv5.errors import Discv5DecodeError, WrongProtocolIdError
from v2.discv5.messages import (
    FindNode,
    Message,
    Nodes,
    Ping,
    Pong,
    TalkReq,
    TalkResp,
    decode_message,
    encode_message,
)
from v2.discv5.packet import (
    WAKU_PROTOCOL_ID,
    Flag,
    Packet,
    decode_handshake_auth,
    decode_packet,
    decode_whoareyou_auth,
    encode_handshake,
    encode_ordinary,
    encode_whoareyou,
    open_message,
)
from v2.discv5.table import BUCKET_SIZE, RoutingTable, log_distance, udp_endpoint
from v2.enr.enr import Enr, EnrError

__all__ = [
    "Addr",
    "CallDone",
    "CallFailed",
    "Discv5Core",
    "DropReason",
    "Dropped",
    "FailReason",
    "NodeContact",
    "Output",
    "Send",
    "StaleRecord",
    "verify_nodes",
]

Addr = tuple[str, int]
MAX_NODES_PACKETS = 5  # geth totalNodesResponseLimit
MAX_NODES_RESULTS = BUCKET_SIZE  # findnodeResultLimit
NODES_PACKET_BYTES = 1000  # geth packNodes: records per NODES message, in bytes
MAX_QUEUED_PER_REMOTE = 8  # nim-eth maxQueuedRequestsPerPeer
_RANDOM_MESSAGE_SIZE = 20  # geth randomPacketMsgSize
_RESPONSE_TYPE: dict[type, type] = {Ping: Pong, FindNode: Nodes, TalkReq: TalkResp}


class DropReason(IntEnum):
    MALFORMED = 1
    WRONG_PROTOCOL = 2
    OVERSIZE = 3
    REPLAYED = 4
    UNKNOWN_NONCE = 5  # WHOAREYOU matching no pending request (or a second one for a request)
    UNEXPECTED_HANDSHAKE = 6
    BAD_HANDSHAKE = 7
    UNSOLICITED_RESPONSE = 8
    CHALLENGE_LIMIT = 9  # the challenge table is full: the oldest was evicted (WHOAREYOU flood)
    QUEUE_FULL = 10
    RATE_LIMITED = 11  # used by the shell's per-IP limit


class FailReason(IntEnum):
    TIMEOUT = 1
    QUEUE_FULL = 2
    NO_ENDPOINT = 3


@dataclass(frozen=True, slots=True)
class Send:
    addr: Addr
    data: bytes


@dataclass(frozen=True, slots=True)
class CallDone:
    request_id: bytes
    node_id: bytes
    request: Message
    responses: tuple[Message, ...]
    enrs: tuple[Enr, ...] = ()  # verified NODES records (FINDNODE calls)


@dataclass(frozen=True, slots=True)
class CallFailed:
    request_id: bytes
    node_id: bytes
    request: Message
    reason: FailReason


@dataclass(frozen=True, slots=True)
class NodeContact:
    """A remote completed a handshake with us (it proved its key; reachability is unverified)."""

    enr: Enr
    addr: Addr


@dataclass(frozen=True, slots=True)
class StaleRecord:
    """A remote's PING announced a newer record than the one we hold: fetch it (FINDNODE [0])."""

    enr: Enr
    addr: Addr
    seq: int


@dataclass(frozen=True, slots=True)
class Dropped:
    addr: Addr
    reason: DropReason
    detail: str = ""


Output = Send | CallDone | CallFailed | NodeContact | StaleRecord | Dropped


@dataclass(slots=True)
class _Session:
    write_key: bytes
    read_key: bytes
    counter: int = 0
    seen: deque[bytes] = field(default_factory=lambda: deque(maxlen=256))


@dataclass(slots=True)
class _Challenge:
    challenge_data: bytes
    created: float


@dataclass(slots=True)
class _Call:
    request_id: bytes
    enr: Enr
    addr: Addr
    message: Message
    deadline: float
    nonce: bytes = b""
    handshake_sent: bool = False
    responses: list[Message] = field(default_factory=list)
    nodes_total: int = 0

    @property
    def key(self) -> tuple[bytes, Addr]:
        return self.enr.node_id, self.addr


def _ip_bytes(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def _is_lan(ip: str) -> bool:
    a = ipaddress.ip_address(ip)
    return a.is_private or a.is_loopback or a.is_link_local


def verify_nodes(responder: Enr, sender: Addr, distances: tuple[int, ...], records: list[bytes]) -> list[Enr]:
    """Keep the NODES records that are valid, at a requested distance, unique and relayable
    (geth v5_udp.go verifyResponseNode, nim-eth nodes_verification.nim)."""
    out: list[Enr] = []
    ids: set[bytes] = set()
    for raw in records:
        if len(out) >= MAX_NODES_RESULTS:
            break
        try:
            enr = Enr.from_rlp(raw)
        except EnrError:
            continue
        nid = enr.node_id
        if nid in ids or log_distance(responder.node_id, nid) not in distances:
            continue
        ep = udp_endpoint(enr)
        if ep is None or ep[1] <= 1024:  # geth errLowPort
            continue
        if _is_lan(ep[0]) and not _is_lan(sender[0]):  # netutil.CheckRelayAddr
            continue
        ids.add(nid)
        out.append(enr)
    return out


class Discv5Core:
    def __init__(self, private_key: bytes, local_enr: Enr, rng: Callable[[int], bytes], *,
                 protocol_id: bytes = WAKU_PROTOCOL_ID, table: RoutingTable | None = None,
                 request_timeout: float = 4.0, handshake_timeout: float = 2.0,
                 session_cache_size: int = 1024, max_challenges: int = 1024) -> None:
        self.private_key = private_key
        self.local_enr = local_enr
        self.local_id = local_enr.node_id
        self.rng = rng
        self.protocol_id = protocol_id
        self.table = table if table is not None else RoutingTable(self.local_id)
        self.request_timeout = request_timeout
        self.handshake_timeout = handshake_timeout
        self.session_cache_size = session_cache_size
        self.max_challenges = max_challenges
        self._sessions: OrderedDict[tuple[bytes, Addr], _Session] = OrderedDict()
        self._challenges: OrderedDict[tuple[bytes, Addr], _Challenge] = OrderedDict()
        self._calls: dict[bytes, _Call] = {}
        self._by_nonce: dict[bytes, bytes] = {}
        self._awaiting: dict[tuple[bytes, Addr], bytes] = {}  # remote -> call waiting for WHOAREYOU
        self._queued: dict[tuple[bytes, Addr], deque[_Call]] = {}
        self._known: OrderedDict[bytes, Enr] = OrderedDict()  # records of remotes (for WHOAREYOU seq)
        self.records_served = 0  # other nodes' records sent in NODES answers (the shell exports it)

    # ------------------------------------------------------------------ public API

    def has_session(self, node_id: bytes, addr: Addr) -> bool:
        return (node_id, addr) in self._sessions

    @property
    def pending_calls(self) -> int:
        return len(self._calls)

    def remember(self, enr: Enr) -> None:
        old = self._known.get(enr.node_id)
        if old is None or enr.seq >= old.seq:
            self._known[enr.node_id] = enr
            self._known.move_to_end(enr.node_id)
            while len(self._known) > 4 * self.session_cache_size:
                self._known.popitem(last=False)

    def request(self, enr: Enr, message: Message, now: float, *,
                addr: Addr | None = None) -> tuple[bytes, list[Output]]:
        """Send ``message`` (its request id is replaced by a fresh one) to ``enr``; returns (id, outputs)."""
        rid = self.rng(8)
        message = dataclasses.replace(message, request_id=rid)
        ep = addr or udp_endpoint(enr)
        if ep is None or enr.node_id == self.local_id:
            return rid, [CallFailed(rid, enr.node_id, message, FailReason.NO_ENDPOINT)]
        self.remember(enr)
        call = _Call(rid, enr, ep, message, now + self.request_timeout)
        self._calls[rid] = call
        return rid, self._send_call(call, now)

    def ping(self, enr: Enr, now: float) -> tuple[bytes, list[Output]]:
        return self.request(enr, Ping(b"", self.local_enr.seq), now)

    def findnode(self, enr: Enr, distances: tuple[int, ...], now: float) -> tuple[bytes, list[Output]]:
        return self.request(enr, FindNode(b"", distances), now)

    def next_deadline(self) -> float | None:
        ds = [c.deadline for c in self._calls.values()]
        ds += [c.created + self.handshake_timeout for c in self._challenges.values()]
        return min(ds) if ds else None

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        for key in [k for k, c in self._challenges.items() if c.created + self.handshake_timeout <= now]:
            del self._challenges[key]
        for call in [c for c in self._calls.values() if c.deadline <= now]:
            out += self._finish_expired(call, now)
        return out

    def datagram(self, addr: Addr, data: bytes, now: float) -> list[Output]:
        if len(data) > 1280:
            return [Dropped(addr, DropReason.OVERSIZE)]
        try:
            pkt = decode_packet(data, self.local_id, protocol_id=self.protocol_id)
        except Discv5DecodeError as exc:
            # Silently: a node with another protocol id sees only timeouts (checkValid in go-discover).
            reason = DropReason.WRONG_PROTOCOL if isinstance(exc, WrongProtocolIdError) else DropReason.MALFORMED
            return [Dropped(addr, reason, str(exc))]
        try:
            if pkt.header.flag == Flag.MESSAGE:
                return self._on_message_packet(addr, pkt, now)
            if pkt.header.flag == Flag.WHOAREYOU:
                return self._on_whoareyou(addr, pkt, now)
            return self._on_handshake(addr, pkt, now)
        except Discv5DecodeError as exc:
            return [Dropped(addr, DropReason.MALFORMED, str(exc))]

    # ------------------------------------------------------------------ sending

    def _nonce(self, session: _Session | None) -> bytes:
        if session is None:
            return self.rng(12)
        session.counter = (session.counter + 1) & 0xFFFFFFFF
        return session.counter.to_bytes(4, "big") + self.rng(8)

    def _session(self, key: tuple[bytes, Addr]) -> _Session | None:
        s = self._sessions.get(key)
        if s is not None:
            self._sessions.move_to_end(key)
        return s

    def _store_session(self, key: tuple[bytes, Addr], s: _Session) -> None:
        self._sessions[key] = s
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.session_cache_size:
            self._sessions.popitem(last=False)

    def _send_message(self, node_id: bytes, addr: Addr, session: _Session, msg: Message) -> tuple[bytes, Send]:
        nonce = self._nonce(session)
        pkt = encode_ordinary(node_id, self.local_id, nonce, self.rng(16), session.write_key, encode_message(msg),
                              protocol_id=self.protocol_id)
        return nonce, Send(addr, pkt)

    def _send_call(self, call: _Call, now: float) -> list[Output]:
        key = call.key
        session = self._session(key)
        if session is not None:
            nonce, send = self._send_message(call.enr.node_id, call.addr, session, call.message)
        elif key in self._awaiting:
            q = self._queued.setdefault(key, deque())
            if len(q) >= MAX_QUEUED_PER_REMOTE:
                del self._calls[call.request_id]
                return [CallFailed(call.request_id, call.enr.node_id, call.message, FailReason.QUEUE_FULL)]
            q.append(call)
            return []
        else:
            nonce = self.rng(12)
            send = Send(call.addr, encode_ordinary(call.enr.node_id, self.local_id, nonce, self.rng(16), None, b"",
                                                   protocol_id=self.protocol_id,
                                                   random_message=self.rng(_RANDOM_MESSAGE_SIZE)))
            self._awaiting[key] = call.request_id
        self._by_nonce.pop(call.nonce, None)
        call.nonce = nonce
        self._by_nonce[nonce] = call.request_id
        return [send]

    def _flush_queue(self, key: tuple[bytes, Addr], now: float) -> list[Output]:
        out: list[Output] = []
        q = self._queued.pop(key, None)
        while q:
            call = q.popleft()
            if call.request_id in self._calls:
                out += self._send_call(call, now)
        # Calls that went back to waiting (no session yet) keep their order in a new queue.
        return out

    def _forget_call(self, call: _Call) -> None:
        self._calls.pop(call.request_id, None)
        self._by_nonce.pop(call.nonce, None)
        if self._awaiting.get(call.key) == call.request_id:
            del self._awaiting[call.key]

    def _finish_expired(self, call: _Call, now: float) -> list[Output]:
        was_awaiting = self._awaiting.get(call.key) == call.request_id
        self._forget_call(call)
        q = self._queued.get(call.key)
        if q is not None and call in q:
            q.remove(call)
        out: list[Output]
        if isinstance(call.message, FindNode) and call.responses:
            # Part of a multi-packet NODES answer arrived: keep what was verified.
            out = [self._done(call)]
        else:
            out = [CallFailed(call.request_id, call.enr.node_id, call.message, FailReason.TIMEOUT)]
        if was_awaiting:
            out += self._flush_queue(call.key, now)
        return out

    def _done(self, call: _Call) -> CallDone:
        enrs: tuple[Enr, ...] = ()
        if isinstance(call.message, FindNode):
            records = [r for m in call.responses if isinstance(m, Nodes) for r in m.records]
            enrs = tuple(verify_nodes(call.enr, call.addr, call.message.distances, records))
        return CallDone(call.request_id, call.enr.node_id, call.message, tuple(call.responses), enrs)

    # ------------------------------------------------------------------ receiving

    def _challenge(self, addr: Addr, src: bytes, nonce: bytes, now: float) -> list[Output]:
        known = self._known.get(src)
        pkt, challenge_data = encode_whoareyou(src, nonce, self.rng(16), known.seq if known else 0, self.rng(16),
                                               protocol_id=self.protocol_id)
        out: list[Output] = []
        key = (src, addr)
        self._challenges.pop(key, None)
        self._challenges[key] = _Challenge(challenge_data, now)
        if len(self._challenges) > self.max_challenges:
            self._challenges.popitem(last=False)
            out.append(Dropped(addr, DropReason.CHALLENGE_LIMIT))
        out.append(Send(addr, pkt))
        return out

    def _on_message_packet(self, addr: Addr, pkt: Packet, now: float) -> list[Output]:
        src = pkt.header.authdata
        key = (src, addr)
        session = self._session(key)
        if session is not None:
            try:
                pt = open_message(pkt, session.read_key)
            except Discv5DecodeError:
                pt = None
            if pt is not None:
                if pkt.header.nonce in session.seen:
                    return [Dropped(addr, DropReason.REPLAYED)]
                session.seen.append(pkt.header.nonce)
                return self._on_plaintext(addr, src, session, pt, now)
        # geth handleUnknown: anything undecryptable is answered with a challenge.
        return self._challenge(addr, src, pkt.header.nonce, now)

    def _on_whoareyou(self, addr: Addr, pkt: Packet, now: float) -> list[Output]:
        wa = decode_whoareyou_auth(pkt.header.authdata)
        rid = self._by_nonce.get(pkt.header.nonce)
        call = self._calls.get(rid) if rid is not None else None
        if call is None or call.addr != addr:
            return [Dropped(addr, DropReason.UNKNOWN_NONCE)]
        if call.handshake_sent:  # geth errChallengeTwice
            return [Dropped(addr, DropReason.UNKNOWN_NONCE, "second challenge")]
        remote = call.enr
        eph = PrivateKey(self.rng(32))
        eph_pub = eph.public_key.format(compressed=True)
        challenge_data = pkt.header_data
        init_key, recip_key = derive_keys(eph.secret, remote.public_key, self.local_id, remote.node_id,
                                          challenge_data)
        sig = id_sign(self.private_key, challenge_data, eph_pub, remote.node_id)
        record = self.local_enr.raw if wa.enr_seq < self.local_enr.seq else b""
        session = _Session(write_key=init_key, read_key=recip_key)
        nonce = self._nonce(session)
        data = encode_handshake(remote.node_id, self.local_id, nonce, self.rng(16), sig, eph_pub, record, init_key,
                                encode_message(call.message), protocol_id=self.protocol_id)
        # Stored now, as geth does (encodeHandshakeHeader): the remote's answers use these keys.
        self._store_session(call.key, session)
        call.handshake_sent = True
        self._by_nonce.pop(call.nonce, None)
        call.nonce = nonce
        self._by_nonce[nonce] = call.request_id
        call.deadline = now + self.request_timeout
        if self._awaiting.get(call.key) == call.request_id:
            del self._awaiting[call.key]
        return [Send(addr, data), *self._flush_queue(call.key, now)]

    def _on_handshake(self, addr: Addr, pkt: Packet, now: float) -> list[Output]:
        auth = decode_handshake_auth(pkt.header.authdata)
        key = (auth.src_id, addr)
        challenge = self._challenges.pop(key, None)
        if challenge is None:
            return [Dropped(addr, DropReason.UNEXPECTED_HANDSHAKE)]
        if auth.record:
            try:
                enr = Enr.from_rlp(auth.record)
            except EnrError as exc:
                return [Dropped(addr, DropReason.BAD_HANDSHAKE, f"record: {exc}")]
            if enr.node_id != auth.src_id:
                return [Dropped(addr, DropReason.BAD_HANDSHAKE, "record of another node")]
            old = self._known.get(auth.src_id)
            if old is not None and old.seq > enr.seq:
                enr = old
        else:
            known = self._known.get(auth.src_id)
            if known is None:
                return [Dropped(addr, DropReason.BAD_HANDSHAKE, "no record")]  # geth errNoRecord
            enr = known
        if not id_verify(enr.public_key, auth.id_signature, challenge.challenge_data, auth.eph_pubkey,
                         self.local_id):
            return [Dropped(addr, DropReason.BAD_HANDSHAKE, "id signature")]
        init_key, recip_key = derive_keys(self.private_key, auth.eph_pubkey, auth.src_id, self.local_id,
                                          challenge.challenge_data)
        try:
            pt = open_message(pkt, init_key)
        except Discv5DecodeError:
            return [Dropped(addr, DropReason.BAD_HANDSHAKE, "message authentication")]
        session = _Session(write_key=recip_key, read_key=init_key)
        session.seen.append(pkt.header.nonce)
        self._store_session(key, session)
        self.remember(enr)
        out: list[Output] = [NodeContact(enr, addr)]
        out += self._on_plaintext(addr, auth.src_id, session, pt, now)
        # Requests we queued for this remote can now use the session.
        out += self._flush_queue(key, now)
        return out

    def _on_plaintext(self, addr: Addr, src: bytes, session: _Session, pt: bytes, now: float) -> list[Output]:
        try:
            msg = decode_message(pt)
        except Discv5DecodeError as exc:
            return [Dropped(addr, DropReason.MALFORMED, str(exc))]
        if isinstance(msg, Ping):
            pong = Pong(msg.request_id, self.local_enr.seq, _ip_bytes(addr[0]), addr[1])
            out: list[Output] = [self._send_message(src, addr, session, pong)[1]]
            known = self._known.get(src)
            if known is not None and msg.enr_seq > known.seq:
                out.append(StaleRecord(known, addr, msg.enr_seq))
            return out
        if isinstance(msg, FindNode):
            return [self._send_message(src, addr, session, m)[1] for m in self._nodes_answer(msg)]
        if isinstance(msg, TalkReq):
            # No TALK protocols are served: an empty response, as the spec asks for unknown ones.
            return [self._send_message(src, addr, session, TalkResp(msg.request_id, b""))[1]]
        call = self._calls.get(msg.request_id)
        if call is None or call.enr.node_id != src or call.addr != addr:
            return [Dropped(addr, DropReason.UNSOLICITED_RESPONSE)]
        expected = _RESPONSE_TYPE.get(type(call.message))
        if expected is None or not isinstance(msg, expected):
            return [Dropped(addr, DropReason.UNSOLICITED_RESPONSE, "response of the wrong type")]
        call.responses.append(msg)
        if isinstance(msg, Nodes):
            call.nodes_total = max(1, min(msg.total, MAX_NODES_PACKETS))
            if len(call.responses) < call.nodes_total:
                call.deadline = now + self.request_timeout  # geth re-arms per response packet
                return []
        self._forget_call(call)
        return [self._done(call)]

    def _nodes_answer(self, msg: FindNode) -> list[Nodes]:
        records: list[bytes] = []
        seen: set[int] = set()
        for d in msg.distances:
            if d in seen or d > 256:  # geth collectTableNodes
                continue
            seen.add(d)
            if d == 0:
                records.append(self.local_enr.raw)
            else:
                found = [e.enr.raw for e in self.table.at_distance(d, live_only=True)]
                self.records_served += len(found)
                records += found
            if len(records) >= MAX_NODES_RESULTS:
                break
        records = records[:MAX_NODES_RESULTS]
        chunks: list[tuple[bytes, ...]] = []
        cur: list[bytes] = []
        for r in records:
            if cur and sum(map(len, cur)) + len(r) > NODES_PACKET_BYTES:
                chunks.append(tuple(cur))
                cur = []
            cur.append(r)
        chunks = [*chunks, tuple(cur)] if cur or not chunks else chunks
        return [Nodes(msg.request_id, len(chunks), c) for c in chunks]
