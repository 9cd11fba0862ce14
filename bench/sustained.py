"""Sustained load through one bridge process: ``python -m bench sustained --rate R --seconds S``.

Sockets, on the machinery of :mod:`bench.bridge_e2e`: one ``waku-bridge`` *process* (the system
under test) between a Waku v1 node and a Waku v2 node that run in *this* process, the load
generator (so the generators never share the bridge's interpreter).  Each message is made when it
is sent (a v1 envelope mined at PoW 0.002 with ``expiry = now + TTL``, a v2 message stamped
``now``), so the figures are the steady state; the bridge's start-up warm-up (its 5 s during which
v1 envelopes are "uncertain" and wait out the echo grace, bridge/standby.py) is run first at the
same rate and reported apart (``warmup``).

One JSON line per run::

  {"rate_per_direction": R, "seconds": S, "delivered": {"v1_to_v2": n, "v2_to_v1": n},
   "lost": {...}, "doubled": {...}, "expired": n, "cpu_us_per_msg": {...}, "rss_max_mib": m,
   "latency_ms": {"v1_to_v2": {"p50": ms, "p99": ms}, "v2_to_v1": {...}}, ...}

* latency: source node send -> arrival at the other network's node (it includes the v1 300 ms
  forwarding tick on v2->v1).
* ``expired``: messages the bridge dropped as expired (its ``dropped`` counters ``expired`` and
  ``standby_expired``) plus arrivals later than the TTL after their send.
* ``cpu_us_per_msg``: the bridge process's CPU (utime + stime, /proc/PID/stat) over the measured
  phase, per delivered message.  With ``--directions both`` the process serves both directions at
  once, so one figure (total CPU / all delivered) is reported for each (``cpu_attribution:
  "shared"``); run ``--directions v1_to_v2`` or ``v2_to_v1`` for a figure of one direction alone.
* ``rss_max_mib``: the bridge's VmHWM (peak RSS) at the end; ``rss_end_mib`` its VmRSS.
* ``--other-rate X`` adds X v1 envelopes/s on another topic; ``--allow-only`` starts the bridge
  with ``--bridge-allow-topic`` for the bench topic: ``bridge_v1_in`` (the bridge's RLPx bytes in and
  envelopes received over the measured phase) shows whether its v1 peer still sends the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from bench.bridge_e2e import (
    PUBSUB,
    SIZE,
    TOPIC,
    BridgeProc,
    Net,
    _envelope,
    _message,
    _pct,
    _phase,
    _settle,
    _with_bridge,
)
from bench.procstat import cpu_s, status_kib
from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce

__all__ = ["main", "paced", "run"]

DIRECTIONS = ("v1_to_v2", "v2_to_v1")
OTHER_TOPIC = bytes.fromhex("00010200")  # --other-rate: v1 traffic on a topic outside --allow-only
TICK = 0.01  # the generators send what is due every 10 ms


def _lat(arrivals: dict[int, float], sent: dict[int, float]) -> list[float]:
    return [(arrivals[i] - t) * 1000 for i, t in sent.items() if i in arrivals]


def _quantiles(lat: list[float]) -> dict[str, float | None]:
    if not lat:
        return {"p50": None, "p99": None}
    return {"p50": round(_pct(lat, 0.5), 1), "p99": round(_pct(lat, 0.99), 1)}


def _other_envelope(seq: int, ttl: int) -> Envelope:
    data = (1 << 62 | seq).to_bytes(8, "big") + os.urandom(SIZE - 8)
    expiry = int(time.time()) + ttl
    return Envelope(expiry, ttl, OTHER_TOPIC, data, mine_smallest_nonce(expiry, ttl, OTHER_TOPIC, data, 0.002) or 0)


def _bridge_v1_in(text: str) -> dict[str, float]:
    out = {"bytes": 0.0, "envelopes": 0.0}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "rlpx_bytes_total" and smp.labels.get("direction") == "in":
                out["bytes"] += smp.value
            elif smp.name == "envelopes_received_total":
                out["envelopes"] += smp.value
    return out


async def paced(count: int, rate: float, send: Callable[[int], Awaitable[None]]) -> None:
    """Call ``send(0 .. count-1)`` at ``rate`` per second; after a late wake-up, send what is due at once
    (so the offered rate holds even when the loop lags)."""
    t0, i = trio.current_time(), 0
    while i < count:
        await trio.sleep_until(t0 + i / rate)
        due = min(count, int((trio.current_time() - t0) * rate) + 1)
        while i < due:
            await send(i)
            i += 1


async def _load(net: Net, rate: float, seconds: float, first: int, dirs: tuple[str, ...], ttl: int,
                sent: dict[str, dict[int, float]], other_rate: float = 0.0) -> None:
    """Send ``rate`` messages/s per direction in ``dirs`` for ``seconds``; seq numbers from ``first``
    (plus ``other_rate`` v1 envelopes/s on :data:`OTHER_TOPIC`, not counted)."""
    n = int(rate * seconds)

    async def other(i: int) -> None:
        await net.v1.post(_other_envelope(first + i, ttl))

    async def v1(i: int) -> None:
        env = _envelope(first + i, time.time(), ttl=ttl)  # made when sent
        sent["v1_to_v2"][first + i] = time.perf_counter()
        await net.v1.post(env)

    async def v2(i: int) -> None:
        m = _message(first + i)
        sent["v2_to_v1"][first + i] = time.perf_counter()
        await net.v2.publish(PUBSUB, m)

    async with trio.open_nursery() as nursery:
        if "v1_to_v2" in dirs:
            nursery.start_soon(paced, n, rate, v1)
        if "v2_to_v1" in dirs:
            nursery.start_soon(paced, n, rate, v2)
        if other_rate > 0:
            nursery.start_soon(paced, int(other_rate * seconds), other_rate, other)


def _expired_drops(st: dict[str, Any]) -> int:
    d = st.get("dropped", {})
    return int(sum(v for k, v in d.items() if k in ("expired", "standby_expired")))


async def _sustained(net: Net, rate: float, seconds: float, warmup: float, dirs: tuple[str, ...], ttl: int,
                     extra: tuple[str, ...], other_rate: float) -> dict[str, Any]:
    async def body(b: BridgeProc) -> dict[str, Any]:
        arrivals = {"v1_to_v2": net.v2_arrivals, "v2_to_v1": net.v1_arrivals}
        # --- warm-up, reported apart ---
        wsent: dict[str, dict[int, float]] = {d: {} for d in DIRECTIONS}
        await _load(net, rate, warmup, 0, dirs, ttl, wsent, other_rate)
        for d in dirs:
            await _settle(arrivals[d], len(wsent[d]), quiet=ttl)
        warm = {"seconds": warmup,
                "delivered": {d: sum(1 for i in wsent[d] if i in arrivals[d]) for d in DIRECTIONS},
                "latency_ms": {d: _quantiles(_lat(arrivals[d], wsent[d])) for d in DIRECTIONS}}
        doubled0 = dict(net.doubled)
        st0 = await trio.to_thread.run_sync(b.status)
        # --- the measured steady state ---
        first = int(rate * warmup) + 1
        sent: dict[str, dict[int, float]] = {d: {} for d in DIRECTIONS}
        in0 = _bridge_v1_in(await trio.to_thread.run_sync(b.metrics))
        cpu0, t0 = cpu_s(b.proc.pid), time.perf_counter()
        gen0 = cpu_s(os.getpid())
        rss_samples: list[int] = []

        async def sampler() -> None:
            while True:
                rss_samples.append(status_kib(b.proc.pid, "VmRSS"))
                await trio.sleep(1)

        before = {d: len(arrivals[d]) for d in DIRECTIONS}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            await _load(net, rate, seconds, first, dirs, ttl, sent, other_rate)
            send_s = time.perf_counter() - t0
            for d in dirs:
                # every message is past its TTL after ``ttl`` quiet seconds: nothing more can come
                await _settle(arrivals[d], before[d] + len(sent[d]), quiet=ttl)
            nursery.cancel_scope.cancel()
        cpu = cpu_s(b.proc.pid) - cpu0
        gen_cpu = cpu_s(os.getpid()) - gen0
        wall = time.perf_counter() - t0
        st = await trio.to_thread.run_sync(b.status)
        in1 = _bridge_v1_in(await trio.to_thread.run_sync(b.metrics))
        delivered = {d: sum(1 for i in sent[d] if i in arrivals[d]) for d in DIRECTIONS}
        lat = {d: _lat(arrivals[d], sent[d]) for d in DIRECTIONS}
        late = sum(1 for d in DIRECTIONS for x in lat[d] if x > ttl * 1000)
        total = sum(delivered.values())
        if len(dirs) == 2:
            cpu_per = {d: round(cpu / total * 1e6, 1) if total else None for d in DIRECTIONS}
        else:
            cpu_per = {d: (round(cpu / total * 1e6, 1) if total else None) if d in dirs else None for d in DIRECTIONS}
        return {"rate_per_direction": rate, "seconds": seconds, "directions": list(dirs), "ttl": ttl,
                "sent": {d: len(sent[d]) for d in DIRECTIONS},
                "delivered": delivered,
                "lost": {d: len(sent[d]) - delivered[d] for d in DIRECTIONS},
                "doubled": {"v1_to_v2": net.doubled["v2"] - doubled0["v2"],
                            "v2_to_v1": net.doubled["v1"] - doubled0["v1"]},
                "expired": _expired_drops(st) - _expired_drops(st0) + late,
                "cpu_us_per_msg": cpu_per, "cpu_attribution": "shared" if len(dirs) == 2 else "single",
                "bridge_cpu_s": round(cpu, 2), "send_seconds": round(send_s, 2), "measured_wall_s": round(wall, 1),
                # the generator's own CPU over the same wall time: near 1 core, it (not the bridge) is the limit
                "generator_cpu_s": round(gen_cpu, 2),
                "rss_max_mib": round(status_kib(b.proc.pid, "VmHWM") / 1024, 1),
                "rss_end_mib": round(status_kib(b.proc.pid, "VmRSS") / 1024, 1),
                "rss_steady_max_mib": round(max(rss_samples, default=0) / 1024, 1),
                "latency_ms": {d: _quantiles(lat[d]) for d in DIRECTIONS},
                "other_rate": other_rate,
                "bridge_v1_in": {k: int(in1[k] - in0[k]) for k in in0},  # wire bytes and envelopes received
                "warmup": warm}

    return await _with_bridge(net, 0.002, body, extra)


async def run(rate: float, seconds: float, *, warmup: float = 5.0, directions: str = "both", ttl: int = 10,
              extra: tuple[str, ...] = (), other_rate: float = 0.0, allow_only: bool = False) -> dict[str, Any]:
    dirs = DIRECTIONS if directions == "both" else (directions,)
    if allow_only:
        extra = (*extra, "--bridge-allow-topic", TOPIC.hex())
    out: dict[str, Any] = await _phase(_sustained, rate, seconds, warmup, dirs, ttl, extra, other_rate)
    out["allow_only"] = allow_only
    out.pop("bridge_rss_mib", None)  # VmRSS at the end: rss_end_mib
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench sustained", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=500.0, help="messages/s per direction (default 500)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the measured phase (default 30)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before it, reported apart")
    p.add_argument("--directions", choices=("both", *DIRECTIONS), default="both")
    p.add_argument("--ttl", type=int, default=10, help="v1 TTL of the generated envelopes (default 10 s)")
    p.add_argument("--other-rate", type=float, default=0.0,
                   help="extra v1 envelopes/s on another topic (00010200), not counted as traffic to bridge")
    p.add_argument("--allow-only", action="store_true",
                   help="start the bridge with --bridge-allow-topic for the bench topic only (its v1 node then "
                        "advertises that topic interest: the other topic should not reach it)")
    p.add_argument("--runs", type=int, default=1, help="runs, one JSON line each")
    p.add_argument("--bridge-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the bridge process (repeatable): --bridge-arg=--bridge-allow-topic=T")
    return p


def cli(argv: list[str]) -> None:
    a = _parser().parse_args(argv)
    for _ in range(a.runs):
        r = trio.run(lambda: run(a.rate, a.seconds, warmup=a.warmup, directions=a.directions, ttl=a.ttl,
                                 extra=tuple(a.bridge_arg), other_rate=a.other_rate,
                                 allow_only=a.allow_only))
        print(json.dumps({"bench": "sustained", **r}), flush=True)


def main() -> list[dict[str, Any]]:
    """``python -m bench`` (all modules): one short run at 500 msg/s per direction."""
    return [trio.run(lambda: run(500.0, 20.0))]


if __name__ == "__main__":
    import sys

    cli(sys.argv[1:])
