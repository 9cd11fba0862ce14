"""Keep-alive: ping connected peers over ``/ipfs/ping/1.0.0``; drop the ones that stop answering.

Why (waku-v2.md §16): an idle connection through a NAT or a proxy dies silently, and a frozen peer
keeps its TCP socket open; only traffic tells.  nwaku pings its outbound peers (10 random ones
every 10 s, all every 2 min) and counts ``waku_node_errors{type="keep_alive_failure"}``; js-waku
pings every peer every 300 s.  We ping every connected peer every ``interval`` and disconnect a
peer after ``max_failures`` consecutive failures, except a static peer: the peer manager would
only redial it at once, so it stays connected and its failures are counted.

:class:`KeepAlivePolicy` is the pure part (whom to ping now, when to give up; ``now`` injected);
:class:`KeepAlive` is the trio shell; :func:`ping` is the libp2p ping client (py-libp2p serves
the protocol itself: 32 bytes in, the same 32 bytes back, repeatable on one stream).  The policy
never has two pings to one peer in flight: py-libp2p 0.8.1 resets a third concurrent ping stream
from one peer (measured: 5 at once -> 3 reset), which would read as a keep-alive failure.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from v2.errors import V2Error
from v2.host import DialError, Host
from v2.metrics import V2Metrics
from v2.protocol_ids import PING
from v2.stream import StreamClosedError

__all__ = ["PING_LENGTH", "KeepAlive", "KeepAliveAction", "KeepAlivePolicy", "PingError", "ping"]

log = logging.getLogger(__name__)

PING_LENGTH = 32  # libp2p ping spec: 32 random bytes, echoed


class PingError(V2Error):
    """The peer did not echo our ping payload in time (or could not be asked)."""


async def ping(host: Host, peer: str, *, timeout: float = 10.0, payload: bytes | None = None,
               clock: Callable[[], float] = time.monotonic) -> float:
    """One libp2p ping; returns the round-trip time in seconds.  ``timeout`` bounds the whole
    exchange, stream negotiation included.  Raises PingError."""
    data = payload if payload is not None else secrets.token_bytes(PING_LENGTH)
    if len(data) != PING_LENGTH:
        raise ValueError(f"a ping payload is {PING_LENGTH} bytes, not {len(data)}")
    with trio.move_on_after(timeout) as scope:
        try:
            stream = await host.new_stream(peer, [PING], timeout=timeout)
        except DialError as exc:
            raise PingError(str(exc)) from None
        try:
            start = clock()
            await stream.write_raw(data, timeout)
            echo = await stream.read_exactly(PING_LENGTH, timeout)
            rtt = clock() - start
        except StreamClosedError as exc:  # StreamTimeout included
            await stream.reset()
            raise PingError(f"ping {peer}: {exc}") from None
        finally:
            await stream.aclose()
        if echo != data:
            raise PingError(f"ping {peer}: wrong echo")
        return rtt
    assert scope.cancelled_caught
    raise PingError(f"ping {peer}: no answer within {timeout} s")


class KeepAliveAction(enum.Enum):
    KEEP = "keep"
    DISCONNECT = "disconnect"


@dataclass(slots=True)
class _PeerState:
    next_due: float
    failures: int = 0
    in_flight: bool = False


class KeepAlivePolicy:
    """Whom to ping and when to give up; pure (``now`` is an argument everywhere).

    A peer is first pinged ``interval`` after it was first seen (a fresh connection just proved
    itself), then ``interval`` after each answer or failure; never twice at once."""

    def __init__(self, interval: float, max_failures: int = 3) -> None:
        if interval <= 0 or max_failures < 1:
            raise ValueError("interval must be > 0 and max_failures >= 1")
        self.interval = interval
        self.max_failures = max_failures
        self._peers: dict[str, _PeerState] = {}

    def sync(self, connected: Iterable[str], now: float) -> None:
        """Track new peers, forget disconnected ones (a reconnect starts with a clean record)."""
        live = set(connected)
        for gone in self._peers.keys() - live:
            del self._peers[gone]
        for peer in live - self._peers.keys():
            self._peers[peer] = _PeerState(now + self.interval)

    def due(self, now: float) -> list[str]:
        """The peers to ping now, marked in flight until :meth:`succeeded`/:meth:`failed`."""
        out = sorted(p for p, s in self._peers.items() if not s.in_flight and s.next_due <= now)
        for p in out:
            self._peers[p].in_flight = True
        return out

    def next_due(self) -> float | None:
        """When the next ping falls due (None: nobody to ping, or all in flight)."""
        times = [s.next_due for s in self._peers.values() if not s.in_flight]
        return min(times) if times else None

    def failures(self, peer: str) -> int:
        s = self._peers.get(peer)
        return s.failures if s is not None else 0

    def succeeded(self, peer: str, now: float) -> None:
        s = self._peers.get(peer)
        if s is not None:
            s.failures, s.in_flight, s.next_due = 0, False, now + self.interval

    def failed(self, peer: str, now: float, *, static: bool = False) -> KeepAliveAction:
        s = self._peers.get(peer)
        if s is None:  # disconnected meanwhile
            return KeepAliveAction.KEEP
        s.failures += 1
        s.in_flight, s.next_due = False, now + self.interval
        if s.failures >= self.max_failures and not static:
            del self._peers[peer]
            return KeepAliveAction.DISCONNECT
        return KeepAliveAction.KEEP


class KeepAlive:
    """The trio shell: one task per ping, at most ``concurrency`` at once, each with a deadline."""

    def __init__(self, host: Host, metrics: V2Metrics, *, interval: float = 60.0, timeout: float = 10.0,
                 max_failures: int = 3, is_static: Callable[[str], bool] = lambda _: False,
                 concurrency: int = 16, clock: Callable[[], float] = time.monotonic,
                 on_answer: Callable[[str, float | None], None] | None = None) -> None:
        """``on_answer(peer, rtt or None)`` hears every ping's outcome (the peer manager's health score)."""
        self._host = host
        self._on_answer = on_answer
        self._metrics = metrics
        self.policy = KeepAlivePolicy(interval, max_failures)
        self._timeout = timeout
        self._is_static = is_static
        self._limiter = trio.CapacityLimiter(concurrency)
        self._clock = clock
        # The poll also notices new and lost peers; no faster than 1 s (cheap set arithmetic).
        self._tick = min(interval, 1.0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                now = self._clock()
                self.policy.sync(self._host.connected_peers(), now)
                for peer in self.policy.due(now):
                    nursery.start_soon(self._ping_one, peer)
                nxt = self.policy.next_due()
                wait = self._tick if nxt is None else min(self._tick, max(nxt - now, 0.0))
                await trio.sleep(max(wait, 0.01))

    async def _ping_one(self, peer: str) -> None:
        async with self._limiter:
            try:
                rtt = await ping(self._host, peer, timeout=self._timeout)
            except PingError as exc:
                action = self._on_failure(peer, exc)
                if self._on_answer is not None:
                    self._on_answer(peer, None)
            else:
                if self._on_answer is not None:
                    self._on_answer(peer, rtt)
                self._metrics.keep_alive_pings.labels("ok").inc()
                self.policy.succeeded(peer, self._clock())
                log.debug("keep-alive ping %s: %.1f ms", peer, rtt * 1000)
                return
        if action is KeepAliveAction.DISCONNECT:
            log.info("v2 peer %s disconnected: %d keep-alive pings failed in a row", peer,
                     self.policy.max_failures)
            self._metrics.keep_alive_disconnects.inc()
            await self._host.disconnect(peer)

    def _on_failure(self, peer: str, exc: PingError) -> KeepAliveAction:
        self._metrics.errors.labels("keep_alive_failure").inc()  # nwaku's name (§18)
        self._metrics.keep_alive_pings.labels("failure").inc()
        static = self._is_static(peer)
        log.debug("keep-alive ping %s failed (%s; static=%s)", peer, exc, static)
        return self.policy.failed(peer, self._clock(), static=static)
