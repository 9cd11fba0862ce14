"""A TCP proxy that makes a path slow and unreliable: delay with jitter, stalls, connection resets.

For drills on a kernel without netem (tc-netem(8) would do this in the qdisc).  Each accepted
connection is paired with one to the upstream; bytes are forwarded in order, each chunk released
``delay ± jitter`` after it was read (never before the previous one: a byte stream keeps its
order, as TCP over a jittery path does).  A *stall* holds one direction for ``stall`` seconds
(a path that stops for a moment: a congested or re-routing link); a *reset* ends both sides of
a connection with an RST (SO_LINGER 0, socket(7)) after a random lifetime, as a middlebox or a
peer's crash does.  All randomness comes from one seeded ``random.Random``: a failing run can be
replayed with the seed it printed.

:class:`Plan` is the pure part (what happens to a chunk, when a connection dies); :class:`DelayProxy`
is the trio shell.
"""

from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass, field

import trio

__all__ = ["DelayProxy", "Plan", "ProxyStats"]


@dataclass(frozen=True, slots=True)
class Plan:
    delay: float = 0.1  # s, each direction
    jitter: float = 0.0  # s, uniform in [-jitter, +jitter]
    stall_rate: float = 0.0  # stalls per second of a connection's life, per direction
    stall: tuple[float, float] = (0.2, 0.6)  # s, how long a stall lasts (uniform)
    reset_after: tuple[float, float] | None = None  # s, a connection's lifetime before its RST (uniform)

    def release_at(self, now: float, previous: float, rng: random.Random) -> float:
        """When a chunk read at ``now`` is written on, given the previous chunk's release time."""
        return max(previous, now + max(0.0, self.delay + rng.uniform(-self.jitter, self.jitter)))

    def next_stall(self, rng: random.Random) -> tuple[float, float]:
        """(seconds until the next stall, its length); inf when there are none."""
        if self.stall_rate <= 0:
            return float("inf"), 0.0
        return rng.expovariate(self.stall_rate), rng.uniform(*self.stall)

    def lifetime(self, rng: random.Random) -> float:
        return float("inf") if self.reset_after is None else rng.uniform(*self.reset_after)


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    resets: int = 0
    stalls: int = 0
    # which side ended a connection the proxy did not reset: "up", the dialler; "down", the upstream
    ended_by: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    bytes: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})


def _rst(stream: trio.SocketStream) -> None:
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class DelayProxy:
    """``await nursery.start(proxy.run)``; then dial ``proxy.port`` on ``listen_host``."""

    def __init__(self, listen_host: str, upstream: tuple[str, int], plan: Plan, seed: int) -> None:
        self.listen_host = listen_host
        self.upstream = upstream
        self.plan = plan
        self.seed = seed
        self._rng = random.Random(seed)
        self.port = 0
        self.stats = ProxyStats()
        self._live: set[trio.CancelScope] = set()

    @property
    def open_connections(self) -> int:
        return len(self._live)

    def reset_all(self) -> None:
        """End every connection open now with an RST (as its lifetime running out does)."""
        for life in self._live:
            life.cancel()

    def set_plan(self, plan: Plan) -> None:
        """Use ``plan`` from now on: new connections get it, and each open one a lifetime of it
        counted from now (a drill settles its network on a calm path, then turns resets on)."""
        self.plan = plan
        for life in self._live:
            life.deadline = trio.current_time() + plan.lifetime(self._rng)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.listen_host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as n:
            task_status.started()
            await trio.serve_listeners(self._serve, listeners, handler_nursery=n)

    async def _serve(self, down: trio.SocketStream) -> None:
        rng = random.Random(self._rng.getrandbits(64))
        self.stats.connections += 1
        try:
            up = await trio.open_tcp_stream(*self.upstream)
        except OSError:
            _rst(down)
            await down.aclose()
            return
        reset = False
        with trio.move_on_after(self.plan.lifetime(rng)) as life:
            self._live.add(life)
            try:
                async with trio.open_nursery() as n:
                    ended: list[str] = []  # the direction whose source closed first
                    n.start_soon(self._direction, down, up, "up", random.Random(rng.getrandbits(64)), n.cancel_scope,
                                 ended)
                    n.start_soon(self._direction, up, down, "down", random.Random(rng.getrandbits(64)),
                                 n.cancel_scope, ended)
            finally:
                self._live.discard(life)
        if life.cancelled_caught:
            reset = True
            self.stats.resets += 1
        for s in (down, up):
            if reset:
                _rst(s)
            with trio.CancelScope(shield=True):
                await s.aclose()

    async def _direction(self, src: trio.SocketStream, dst: trio.SocketStream, name: str, rng: random.Random,
                         done: trio.CancelScope, ended: list[str]) -> None:
        send, recv = trio.open_memory_channel[tuple[float, bytes]](float("inf"))

        async def reader() -> None:
            previous = 0.0
            try:
                while data := await src.receive_some(65536):
                    previous = self.plan.release_at(trio.current_time(), previous, rng)
                    send.send_nowait((previous, data))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            if not ended and not done.cancel_called:  # "up": the dialling side closed first
                ended.append(name)
                self.stats.ended_by[name] += 1
            send.close()

        async def writer() -> None:
            gap, length = self.plan.next_stall(rng)
            stall_at = trio.current_time() + gap
            try:
                async for at, data in recv:
                    await trio.sleep_until(at)
                    if trio.current_time() >= stall_at:
                        self.stats.stalls += 1
                        await trio.sleep(length)
                        gap, length = self.plan.next_stall(rng)
                        stall_at = trio.current_time() + gap
                    await dst.send_all(data)
                    self.stats.bytes[name] += len(data)
                await dst.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                done.cancel()  # the other side is gone: end the pair

        async with trio.open_nursery() as n:
            n.start_soon(reader)
            n.start_soon(writer)
