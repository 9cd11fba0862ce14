"""One waku/1 peer as a pure state machine: Status first, then packet dispatch (waku-v1.md §2-§11).

Like :class:`v1.rlpx.session.Session` one layer down: :meth:`WakuPeer.receive` takes one received
waku/1 packet (code, payload, wire size) and ``now`` and returns what it means, as events;
:meth:`WakuPeer.flush` takes the envelopes due to this peer and returns the Messages packets to
write now, paced to the limits the peer advertised.  No trio, no clock, no metrics, no pool: the
pool is shared by every peer, so the node (v1/node.py, the trio shell) adds what a
:class:`MessagesIn` carries to it, counts each event and carries out a :class:`Disconnect`.

The rules, and where the peers we meet do the same:

* The first packet must be Status (status-go waku/v1/peer.go ``handshake``: anything else, or a
  Status that does not decode, ends the session); a light node refuses a light peer, they are
  useless to each other (status-go ``setOptions``: "two light client communication
  restricted").  A second Status is ignored.
* Every later packet passes the per-peer rate limits first (status-go rate_limiter.go): over the
  limit it is discarded and counted; ``tolerance`` exceedances in one window end the session.
  The Batch Ack / Message Response a peer with confirmations owes us for our own Messages
  packets are not counted (see :class:`v1.waku.ratelimit.PeerRateLimiter`).
* Status Update merges into what the peer asked for before (keys it omits keep their values:
  status-go ``setOptions`` sets only the keys present); new rate limits re-pace what we send it.
* Messages: every envelope is validated against our own rules (expiry, future allowance, size,
  PoW); a packet that does not decode ends the session as a breach of the protocol (status-go's
  ``handleMessagesCode`` refuses it as an invalid payload).
* Message Response errors are reported; P2P Message (mail-server history) is never trusted
  here; Batch Ack, P2P Request / Request Complete and unknown codes are ignored (we advertise
  confirmations=false and are no mail server; waku-v1.md §2: unknown codes MUST be ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, auto

from v1.rlpx.base import DisconnectReason
from v1.waku.bloom import FULL_BLOOM, bloom_or
from v1.waku.envelope import Envelope, EnvelopeError
from v1.waku.messages import (
    EnvelopeErrorEntry,
    MessagesError,
    WakuCode,
    decode_message_response,
    decode_messages,
    encode_messages,
)
from v1.waku.pool import PeerFilter, Rejection, validate
from v1.waku.ratelimit import PeerRateLimiter, SendPacer
from v1.waku.status import MAX_TOPIC_INTEREST, RateLimits, StatusError, StatusOptions, apply_update, decode_status

__all__ = [
    "MAX_PACKET",
    "STATUS_TIMEOUT",
    "Disconnect",
    "EnvelopesDropped",
    "EnvelopesRefused",
    "Event",
    "MessagesIn",
    "OutPacket",
    "Outgoing",
    "PacketIn",
    "PeerConfig",
    "PeerState",
    "RateLimited",
    "Ready",
    "Received",
    "StatusUpdated",
    "WakuPeer",
    "advertised_interest",
    "merge_filter",
    "tightest_limit",
]

MAX_PACKET = 1024 * 1024  # status-go disconnects on Messages packets > 1 MiB (waku-v1.md §7)
STATUS_TIMEOUT = 5.0  # s we wait for the peer's Status (the shell's timer)
DEFAULT_POW = 0.001  # status-go's WithDefaults for a Status without key 0
ANSWERS = (WakuCode.BATCH_ACK, WakuCode.MESSAGE_RESPONSE)  # what a peer with confirmations owes us


class PeerState(Enum):
    STATUS = auto()  # waiting for the peer's Status
    READY = auto()
    CLOSED = auto()  # we decided to disconnect: nothing more is processed


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Our side's rules for what a peer sends us."""

    pow_requirement: float = 0.002
    max_envelope_size: int = 1024 * 1024
    future_allowance: float = 10.0
    rate_limit_packets: float = 0.0  # per second; 0 = unlimited
    rate_limit_bytes: float = 0.0
    light_node: bool = False
    max_packet: int = MAX_PACKET - 16  # envelopes per Messages packet we send, in bytes (RLP list head)
    # The topics we advertised (None: all, the full bloom): an envelope of another topic from a peer
    # that ignores our Status is refused (Rejection.TOPIC), never pooled, forwarded or bridged.
    topic_interest: frozenset[bytes] | None = None
    bloom: bytes = FULL_BLOOM  # what we advertised without a topic interest (more than 10 000 topics)


# --- events ---


@dataclass(frozen=True, slots=True)
class Ready:
    """The peer's Status arrived and is acceptable: the peer is served from now on."""

    status: StatusOptions


@dataclass(frozen=True, slots=True)
class Disconnect:
    """End the session with ``reason``; ``cause`` is the metric label (why), ``detail`` a log line."""

    reason: DisconnectReason
    cause: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The packet was over the limit (``kind``: "packets" | "bytes") and was not processed."""

    kind: str


@dataclass(frozen=True, slots=True)
class PacketIn:
    """A packet within the limits, by ``label`` (the code's name; "unknown"; "malformed")."""

    label: str


@dataclass(frozen=True, slots=True)
class Received:
    """One entry of a Messages packet: ``envelope`` None if it did not decode; ``rejection`` None
    if it meets our rules (whether it is new is the pool's call)."""

    envelope: Envelope | None
    rejection: Rejection | None = None


@dataclass(frozen=True, slots=True)
class MessagesIn:
    envelopes: tuple[Received, ...]


@dataclass(frozen=True, slots=True)
class EnvelopesDropped:
    """``count`` envelopes dropped before validation, by ``reason`` (a pool rejection's value or
    "p2p_message")."""

    reason: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class StatusUpdated:
    """A Status Update changed what the peer wants (:attr:`WakuPeer.filter`) or its limits."""

    filter: PeerFilter


@dataclass(frozen=True, slots=True)
class EnvelopesRefused:
    """A Message Response: envelopes of ours the peer refused, with why."""

    errors: tuple[EnvelopeErrorEntry, ...]


Event = (Ready | Disconnect | RateLimited | PacketIn | MessagesIn | EnvelopesDropped | StatusUpdated
         | EnvelopesRefused)


@dataclass(frozen=True, slots=True)
class OutPacket:
    code: WakuCode
    data: bytes
    envelopes: int  # how many envelopes it carries


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What :meth:`WakuPeer.flush` says to write now, and what it gave up on (the node counts)."""

    packets: tuple[OutPacket, ...] = ()
    expired: int = 0  # expired while queued behind the peer's limits
    oversize: int = 0  # in a packet over the peer's bytes/s limit: its bucket could never pass it


# --- status merge ---


def advertised_interest(topics: Iterable[bytes] | None) -> tuple[bytes, tuple[bytes, ...] | None]:
    """(bloom, topic interest) for our Status when we want only ``topics`` (None: everything).

    Both keys are sent: status-go (waku/v1/peer.go setOptions, topicOrBloomMatch) and nim use the
    topic interest when present, an implementation that knows only the bloom uses the bloom (the
    OR of the topics' blooms, waku-v1.md §8).  Above the 10 000-topic limit of key 5
    (status-go StatusOptions.Validate) only the bloom is sent."""
    if topics is None:
        return FULL_BLOOM, None
    ts = tuple(sorted(set(topics)))
    return bloom_or(list(ts)), (ts if len(ts) <= MAX_TOPIC_INTEREST else None)


def tightest_limit(limits: RateLimits | None) -> float:
    """The tightest non-zero limit (packets/s or bytes/s) a peer applies to us (per IP or per peer
    id; its per-topic limit is not enforced by status-go, waku-v1.md §10)."""
    if limits is None:
        return 0.0
    return float(min((v for v in (limits.ip, limits.peer_id) if v > 0), default=0))


def merge_filter(o: StatusOptions, base: PeerFilter | None = None) -> PeerFilter:
    """What the peer wants after its Status (``base`` None) or a Status Update over ``base``."""
    if base is None:
        # Defaults for absent keys: status-go's WithDefaults (pow 0.001, full bloom).
        current = StatusOptions(pow_requirement=DEFAULT_POW, bloom=FULL_BLOOM, light_node=False)
    else:
        current = StatusOptions(pow_requirement=base.pow_requirement, bloom=base.bloom, light_node=base.light,
                                topic_interest=tuple(base.topic_interest) if base.topic_interest is not None
                                else None)
    merged = apply_update(current, o)
    pow_ = merged.pow_requirement if merged.pow_requirement is not None else DEFAULT_POW
    return PeerFilter(
        pow_requirement=pow_ if math.isfinite(pow_) else DEFAULT_POW,
        bloom=merged.bloom if merged.bloom is not None else FULL_BLOOM,
        topic_interest=frozenset(merged.topic_interest) if merged.topic_interest is not None else None,
        light=bool(merged.light_node),
    )


def _label(code: int) -> str:
    try:
        return WakuCode(code).name.lower()
    except ValueError:
        return "unknown"


class WakuPeer:
    """One peer's waku/1 state: what it wants (:attr:`filter`), the limits we police it by
    (:attr:`limiter`) and pace to (:attr:`pacer`), and whether it sends confirmations."""

    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.state = PeerState.STATUS
        self.filter = merge_filter(StatusOptions())
        self.limiter = PeerRateLimiter.create(config.rate_limit_packets, config.rate_limit_bytes)
        self.pacer = SendPacer(config.max_packet)
        self.confirmations = False  # it advertised confirmations: it answers our Messages packets

    def _close(self, reason: DisconnectReason, cause: str, detail: str = "") -> Disconnect:
        self.state = PeerState.CLOSED
        return Disconnect(reason, cause, detail)

    def status_timeout(self) -> Disconnect:
        """No Status within :data:`STATUS_TIMEOUT` (the shell's timer)."""
        return self._close(DisconnectReason.SUBPROTOCOL_ERROR, "status_timeout")

    def receive(self, code: int, data: bytes, size: int, now: float) -> list[Event]:
        """The events of one received packet (``size``: its wire size, for the bytes/s limit)."""
        if self.state is PeerState.CLOSED:
            return []
        if self.state is PeerState.STATUS:
            return [self._first(code, data)]
        kind = self.limiter.check(size, now, answer=code in ANSWERS)
        if kind is not None:
            if self.limiter.abusive:
                return [RateLimited(kind), self._close(DisconnectReason.SUBPROTOCOL_ERROR, "rate_limit")]
            return [RateLimited(kind)]  # over the limit: not processed (counted)
        events: list[Event] = [PacketIn(_label(code))]
        if code == WakuCode.MESSAGES:
            events += self._messages(data, now)
        elif code == WakuCode.STATUS_UPDATE:
            events.append(self._status_update(data))
        elif code == WakuCode.MESSAGE_RESPONSE:
            # A status-go peer with confirmations on reports envelopes it refused: surfaced (a
            # refused bridged post is an operator-visible problem).
            try:
                events.append(EnvelopesRefused(tuple(decode_message_response(data).errors)))
            except MessagesError:
                events.append(PacketIn("malformed"))
        elif code == WakuCode.P2P_MESSAGE:
            # Mail-server history (possibly expired envelopes): only for trusted peers, never
            # forwarded, never bridged (waku-v1.md §11).  We trust no mail server.
            events.append(EnvelopesDropped("p2p_message"))
        # STATUS again (ignored, §2), Batch Ack, P2P Request / Request Complete, unknown: nothing.
        return events

    def _first(self, code: int, data: bytes) -> Ready | Disconnect:
        if code != WakuCode.STATUS:
            return self._close(DisconnectReason.BREACH_OF_PROTOCOL, "no_status")
        try:
            theirs = decode_status(data)
        except StatusError as exc:
            return self._close(DisconnectReason.BREACH_OF_PROTOCOL, "bad_status", f"bad Status: {exc}")
        self.filter = merge_filter(theirs)
        self.pacer.set_limits(tightest_limit(theirs.rate_limits), tightest_limit(theirs.bytes_rate_limits))
        self.confirmations = bool(theirs.confirmations)
        if self.config.light_node and self.filter.light:
            return self._close(DisconnectReason.USELESS_PEER, "both_light")
        self.state = PeerState.READY
        return Ready(theirs)

    def _status_update(self, data: bytes) -> StatusUpdated | Disconnect:
        try:
            update = decode_status(data)
        except StatusError as exc:
            return self._close(DisconnectReason.BREACH_OF_PROTOCOL, "bad_status", f"bad Status Update: {exc}")
        self.filter = merge_filter(update, base=self.filter)
        if update.confirmations is not None:
            self.confirmations = update.confirmations
        if update.rate_limits is not None or update.bytes_rate_limits is not None:
            self.pacer.set_limits(None if update.rate_limits is None else tightest_limit(update.rate_limits),
                                  None if update.bytes_rate_limits is None
                                  else tightest_limit(update.bytes_rate_limits))
        return StatusUpdated(self.filter)

    def _messages(self, data: bytes, now: float) -> list[Event]:
        try:
            decoded = decode_messages(data)
        except MessagesError as exc:
            return [EnvelopesDropped(Rejection.MALFORMED.value),
                    self._close(DisconnectReason.BREACH_OF_PROTOCOL, "malformed_messages", str(exc))]
        c = self.config
        return [MessagesIn(tuple(
            Received(None) if isinstance(env, EnvelopeError) else
            Received(env, validate(env, now, pow_requirement=c.pow_requirement, max_size=c.max_envelope_size,
                                   future_allowance=c.future_allowance, bloom=c.bloom,
                                   topic_interest=c.topic_interest))
            for env in decoded))]

    # --- sending ---

    def flush(self, envelopes: Iterable[Envelope], now: float) -> Outgoing:
        """Queue ``envelopes`` (due to this peer) and return the Messages packets to write now:
        paced to its advertised limits (status-go drops a peer that exceeds them; waku-v1.md
        §10), each <= ``max_packet`` bytes of envelopes (§7).  What does not fit waits."""
        self.pacer.offer(envelopes)
        packets, expired, oversize = self.pacer.take(now)
        return Outgoing(tuple(OutPacket(WakuCode.MESSAGES, encode_messages(b), len(b)) for b in packets),
                        len(expired), len(oversize))

    def sent(self, packet: OutPacket) -> None:
        """``packet`` was written: a peer with confirmations answers it (Message Response and
        Batch Ack, status-go waku/v1/peer.go sendConfirmation); those answers are owed to us."""
        if self.confirmations and packet.code == WakuCode.MESSAGES:
            self.limiter.expect_answers(2)
