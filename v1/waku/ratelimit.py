"""Per-peer token buckets for packets/s and bytes/s (status-go rate_limiter.go; waku-v1.md §10):
:class:`PeerRateLimiter` polices what a peer sends us, :class:`SendPacer` keeps what we send a peer
within the limits it advertised."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from v1.waku.envelope import Envelope

__all__ = ["DEFAULT_BYTES_PER_S", "DEFAULT_PACKETS_PER_S", "MAX_LEGIT_PACKET", "MAX_OWED_ANSWERS", "PACING_MARGIN",
           "PeerRateLimiter", "SendPacer", "TokenBucket",
           "refill_rate"]

# The bridge's defaults for what one peer may send us (config v1.rate_limit_packets / _bytes), from
# status-go's own: waku/common/rate_limiter.go defaultPeerRateLimiterConfig has
# PacketLimitPerSecPeerID 5 and BytesLimitPerSecPeerID 1048576.  Its tsenart/tb bucket for a limit
# of 5 really refills 10 packets/s (refill_rate(5) == 10: one token per 100 ms tick), so 10/s is
# what a status-go node with default limits lets a peer send.  A fleet peer batches everything new
# into one Messages packet every 300 ms (status-go waku/common: TransmissionCycle = 300 ms), about
# 3.3 packets/s plus the odd status or bloom update: 3x headroom, and a bucket of 10 absorbs the
# bunching of a late sender.  Confirmations it owes us do not count (expect_answers).  A flood of
# 300 packets exceeds the bucket within its first second and is disconnected (tolerance 5).
DEFAULT_PACKETS_PER_S = 10
DEFAULT_BYTES_PER_S = 1 << 20  # status-go BytesLimitPerSecPeerID; the bucket holds >= one 1 MiB packet

MAX_OWED_ANSWERS = 64  # two answers for each of our last 32 Messages packets

# A full Messages packet (<= 1 MiB of envelopes, waku-v1.md §7) plus snappy's worst-case growth.
MAX_LEGIT_PACKET = (1 << 20) + (1 << 16)


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second; 0 = unlimited
    burst: float
    tokens: float = 0.0  # may go below 0: a debt (SendPacer's oversize envelope)
    stamp: float | None = None  # None: full at the first use

    def refill(self, now: float) -> float:
        """The tokens available at ``now`` (a full bucket at the first call)."""
        if self.stamp is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, n: float, now: float) -> bool:
        if self.rate <= 0:
            return True
        if self.refill(now) >= n:
            self.tokens -= n
            return True
        return False


@dataclass(slots=True)
class PeerRateLimiter:
    """Counts exceedances; ``abusive`` once ``tolerance`` happen within one refill window."""

    packets: TokenBucket
    bytes: TokenBucket
    tolerance: int = 5
    exceeded: int = 0
    _window_start: float = 0.0
    # Answers the peer owes us: a status-go node with confirmations on answers every Messages
    # packet it receives with a Message Response (12) and a Batch Ack (11) (waku/v1/peer.go
    # sendConfirmation), and it ignores the limits we advertise.  Those answers are provoked by
    # our own sending; counted, they ate the budget and real Messages packets were discarded.
    _owed_answers: int = 0

    @classmethod
    def create(cls, packets_per_s: float, bytes_per_s: float, tolerance: int = 5) -> PeerRateLimiter:
        # One second of burst, as status-go's buckets (capacity = rate).  The byte bucket holds at
        # least one full legitimate Messages packet: with a smaller capacity such a packet could
        # never pass, and a peer batching 200 envelopes/s into 1 MiB packets would be "abuse".
        return cls(TokenBucket(packets_per_s, max(packets_per_s, 1.0)),
                   TokenBucket(bytes_per_s, max(bytes_per_s, MAX_LEGIT_PACKET)), tolerance)

    def expect_answers(self, n: int) -> None:
        """We sent the peer something it may answer with ``n`` packets (capped: a peer that never
        answers must not bank an unlimited exemption)."""
        self._owed_answers = min(self._owed_answers + n, MAX_OWED_ANSWERS)

    def check(self, size: int, now: float, *, answer: bool = False) -> str | None:
        """None if within limits, else the kind exceeded ("packets" | "bytes").  An ``answer``
        (Batch Ack / Message Response) that we are owed is not counted."""
        if answer and self._owed_answers > 0:
            self._owed_answers -= 1
            return None
        kind = None
        if not self.packets.take(1, now):
            kind = "packets"
        elif not self.bytes.take(size, now):
            kind = "bytes"
        if kind is not None:
            if now - self._window_start > 1.0:
                self._window_start, self.exceeded = now, 0
            self.exceeded += 1
        return kind

    @property
    def abusive(self) -> bool:
        return self.exceeded >= self.tolerance


PACING_MARGIN = 0.9  # send at 90 % of a peer's limit: its buckets refill on its own clock (100 ms ticks)
_REFILL_TICK = 0.1  # status-go's throttlers: tb.NewThrottler(100 * time.Millisecond)


def refill_rate(limit: float) -> float:
    """What status-go's bucket for an advertised ``limit`` really refills per second.

    tsenart/tb (which status-go's rate_limiter.go uses) adds ``floor(0.5 + limit · 0.1)`` tokens
    every 100 ms (throttler.go ``Bucket``), not ``limit`` per second: a limit of 14 refills 10/s,
    of 15 refills 20/s, and a limit below 5 refills nothing at all (its bucket holds ``limit``
    tokens and never refills).  The bucket's capacity is ``limit``.
    """
    return float(int(0.5 + limit * _REFILL_TICK)) / _REFILL_TICK


def _paced(limit: float) -> float:
    """The rate we send at: a margin under both the advertised limit and what really refills.
    A limit that refills nothing (< 5/s) cannot be kept by any sender; we pace to the limit."""
    real = refill_rate(limit)
    return max(0.0, min(limit, real) if real > 0 else limit) * PACING_MARGIN


def _packet_size(payload: int) -> int:
    """The msg-data size status-go counts for a Messages packet carrying ``payload`` bytes of
    envelopes: the RLP list around them (its limiter counts ``msg.Size``)."""
    if payload < 56:
        return payload + 1
    return payload + 1 + (payload.bit_length() + 7) // 8


@dataclass(slots=True)
class SendPacer:
    """What to send one peer now, within the packets/s and bytes/s it advertised (Status options
    4 and 6, ``[ip, peer_id, topic]``; 0 = unlimited).  status-go counts 1 per waku packet and its
    size in bytes against buckets holding one second, and disconnects a peer that keeps exceeding
    them (waku-v1.md §10), so a bridge flooding v1 must queue instead.  Envelopes wait in arrival
    order; one that expires while waiting is handed back as expired (the caller counts it).

    A queued envelope a little larger than our byte bucket (which runs at the margin) goes alone
    when the bucket is full, and the debt delays what follows.  One whose packet exceeds the
    peer's bytes/s limit itself can never pass status-go's bucket (its capacity is the limit, and
    a packet larger than that is an exceedance every time): it is handed back as oversize."""

    max_packet: int
    # The largest msg-data a status-go peer takes: v1/peer.go Run disconnects on a packet over its
    # MaxMessageSize (1 MiB by default, and not advertised).  An envelope that cannot fit in such
    # a packet even alone is handed back as oversize.
    max_msg: int = 1 << 20
    _queue: deque[Envelope] = field(default_factory=deque)
    # One second of burst, as the peer's own buckets hold (at least one packet).
    _packets: TokenBucket = field(default_factory=lambda: TokenBucket(0.0, 1.0))
    _bytes: TokenBucket = field(default_factory=lambda: TokenBucket(0.0, 0.0))
    _bytes_limit: float = 0.0  # the peer's advertised bytes/s: its bucket's capacity

    @property
    def packets_per_s(self) -> float:
        return self._packets.rate

    @property
    def bytes_per_s(self) -> float:
        return self._bytes.rate

    def set_limits(self, packets_per_s: float | None = None, bytes_per_s: float | None = None) -> None:
        """The limits the peer advertised (None: that one unchanged, as a Status Update that omits
        it); we send at ``PACING_MARGIN`` of what its buckets really refill (:func:`refill_rate`),
        with ``PACING_MARGIN`` of their capacity as burst, starting again from full buckets."""
        if packets_per_s is not None:
            limit = max(0.0, packets_per_s)
            self._packets = TokenBucket(_paced(limit), max(1.0, limit * PACING_MARGIN))
        if bytes_per_s is not None:
            limit = max(0.0, bytes_per_s)
            self._bytes = TokenBucket(_paced(limit), limit * PACING_MARGIN)
            self._bytes_limit = limit
        self._packets.stamp = self._bytes.stamp = None

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, envs: Iterable[Envelope]) -> None:
        self._queue.extend(envs)

    def take(self, now: float) -> tuple[list[list[Envelope]], list[Envelope], list[Envelope]]:
        """(Messages packets to send now, each <= ``max_packet`` bytes of envelopes; expired ones;
        oversize ones, which the peer's byte limit can never let through)."""
        expired = [e for e in self._queue if e.expiry < now]
        limit = min(self._bytes_limit, self.max_msg) if self._bytes.rate > 0 else self.max_msg
        oversize = [e for e in self._queue if e.expiry >= now and _packet_size(e.size) > limit]
        if expired or oversize:
            self._queue = deque(e for e in self._queue if e.expiry >= now and _packet_size(e.size) <= limit)
        pk, by = self._packets, self._bytes
        pk.refill(now)
        by.refill(now)
        packets: list[list[Envelope]] = []
        while self._queue and (pk.rate <= 0 or pk.tokens >= 1.0):
            batch: list[Envelope] = []
            size = 0
            while self._queue:
                n = self._queue[0].size
                if batch and size + n > self.max_packet:
                    break
                # Too big for what is left: wait, unless it is alone and the bucket is full.
                if by.rate > 0 and n > by.tokens and (batch or packets or by.tokens < by.burst):
                    break
                batch.append(self._queue.popleft())
                size += n
                if by.rate > 0:
                    by.tokens -= n
            if not batch:
                break
            packets.append(batch)
            if pk.rate > 0:
                pk.tokens -= 1.0
        return packets, expired, oversize
