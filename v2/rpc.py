"""The request/response exchange every v2 protocol shares (waku-v2.md §2), both sides.

One exchange per stream: the client writes one length-prefixed request, closes its write side and
reads exactly one length-prefixed answer; the service answers once and closes its write side
(js-waku reads to EOF).  What a failure means (status code, counter, error type) differs per
protocol, so these helpers only move bytes and raise or report; the protocols map the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry

from v2.metrics import ServiceLimitMetrics
from v2.ratelimit import Limited, RateLimit, RequestLimiter
from v2.stream import FrameTooLarge, Stream, StreamClosedError

if TYPE_CHECKING:
    from v2.host import Host

__all__ = ["UNKNOWN_REQUEST_ID", "RequestGate", "exchange", "new_request_id", "request", "respond"]

UNKNOWN_REQUEST_ID = "N/A"  # nwaku's request_id in an answer to a request it could not read


def new_request_id() -> str:
    """A UUIDv4, as js-waku sends (nwaku requires a request id, any string)."""
    return str(uuid.uuid4())


async def exchange(stream: Stream, frame: bytes, max_response: int, *, timeout: float,
                   reset_on_error: bool = False) -> bytes | None:
    """Send ``frame`` on ``stream`` and read the one answer; None if the peer closed without one.

    Raises StreamClosedError (including StreamTimeout) or FrameTooLarge; ``reset_on_error`` resets
    the stream first.  The stream is closed on return, whatever happened.
    """
    try:
        await stream.write_lp(frame, timeout=timeout)
        await stream.close_write()
        return await stream.read_lp(max_response, timeout=timeout)
    except (StreamClosedError, FrameTooLarge):
        if reset_on_error:
            await stream.reset()
        raise
    finally:
        await stream.aclose()


async def request(host: Host, peer: str, protocols: Sequence[str], frame: bytes, max_response: int, *,
                  timeout: float, reset_on_error: bool = False) -> bytes | None:
    """Open a stream to ``peer`` (each wait bounded by ``timeout``) and :func:`exchange` ``frame``.

    Raises DialError when no stream opens, else as :func:`exchange`.
    """
    stream = await host.new_stream(peer, protocols, timeout=timeout)
    return await exchange(stream, frame, max_response, timeout=timeout, reset_on_error=reset_on_error)


async def respond(stream: Stream, frame: bytes, *, timeout: float = 10.0) -> bool:
    """Write the one answer and close our write side; False if the stream broke (the caller counts it)."""
    try:
        await stream.write_lp(frame, timeout=timeout)
        await stream.close_write()
    except StreamClosedError:
        return False
    return True


class RequestGate:
    """A service's rate limit (v2/ratelimit.py :class:`RequestLimiter`) with its counters; checked
    once per request, after the read (a pre-opened stream closed unused costs nothing) and before
    any decoding.  ``limit`` None or unlimited: every request is served (still counted)."""

    def __init__(self, service: str, limit: RateLimit | None, registry: CollectorRegistry, *,
                 per_peer_only: bool = False, clock: Callable[[], float] = trio.current_time) -> None:
        self.service = service
        self.limiter = None if limit is None or limit.unlimited else RequestLimiter(limit, per_peer_only=per_peer_only)
        self._clock = clock
        self._metrics = ServiceLimitMetrics.of(registry)
        self._served = self._metrics.requests.labels(service, "served")
        self._rejected = self._metrics.requests.labels(service, "rejected")
        if self.limiter is not None:
            self._metrics.limit.labels(service).set(self.limiter.limit.per_second)
            for scope in (Limited.PEER, Limited.SERVICE):  # at 0 from the start, for rate() alerts
                self._metrics.rejected.labels(service, scope.label)

    def admit(self, peer: str) -> bool:
        verdict = Limited.NO if self.limiter is None else self.limiter.check(peer, self._clock())
        if verdict is Limited.NO:
            self._served.inc()
            return True
        self._rejected.inc()
        self._metrics.rejected.labels(self.service, verdict.label).inc()
        return False
