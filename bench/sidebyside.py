"""Side by side in one run on one machine: go-waku's relay against ours, and the bridge between status-go and go-waku.

``python -m bench sidebyside [--part relay|bridge|both] [--messages N] [--rate R] [--bridge-rates 100,200,300,400]
[--step-seconds S] [--runs K]``; one JSON line per run.

Relay (``relay``): two processes on loopback, a publisher and a receiver on ``/waku/2/rs/0/0``, TCP +
noise + yamux, N messages of 300 B published back to back (``max``: as fast as publish returns) and
paced at ``--rate``.  Once for two go-waku v0.10.0 processes (the harness of
``tests/interop/go/wakuv2/``, its ``publish_many`` and ``relay_stats`` commands: one command
publishes them all, the receiver counts without a JSON line per message), once for two of our
``V2Node`` processes (this module's ``_ours`` worker speaks the same commands, over the node of
:mod:`bench.v2_relay`).  Per run: ``delivered`` (distinct messages), ``lost``,
``delivered_msg_s`` = delivered / (first publish -> last arrival), and the CPU of each process
(utime + stime from /proc/PID/stat, from just before the first publish to the poll that saw the
last arrival) in µs per delivered message, each and in all.  ``ratio`` is ours / go-waku for
msg/s and for CPU per message, per mode.

Bridge (``bridge``): a status-go v1.1.0 ``waku`` node (``tests/interop/go/wakuv1/``) <-> one
``waku-bridge`` process <-> a go-waku node, both directions at once, a step per rate in
``--bridge-rates`` (messages/s per direction, ``--step-seconds`` each; 300 B, PoW 0.002, TTL 10 s
as in ``bench sustained``); status-go seals and posts every envelope when it is due
(``post_many``), go-waku publishes when due (``publish_many``), and each counts what arrived from
the bridge (``envelope_stats`` / ``relay_stats``; the first 20 bytes carry a sequence number and the
send time, for the latency).  Per step and direction: ``delivered``, ``lost``, ``expired`` (arrived
later than the TTL), ``bridged`` (what the bridge counted as published: a shortfall of
``delivered`` below it was lost after the bridge), latency p50/p99; ``bridge_expired_drops``
(the bridge's ``expired`` and ``standby_expired`` drop counters, which have no direction), the
bridge's CPU per delivered message (both directions share one process: total / all delivered),
and each Go peer's CPU.
``max_rate_zero_loss`` is the highest step with nothing lost either way.

``load_avg`` (the 1/5/15-minute load averages from /proc/loadavg) is recorded at the start and end
of every part: on a shared machine it says what else competed for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.bridge_e2e import CONTENT as BRIDGE_CONTENT
from bench.bridge_e2e import PUBSUB as BRIDGE_PUBSUB
from bench.bridge_e2e import TOPIC as BRIDGE_V1_TOPIC
from bench.bridge_e2e import BridgeProc
from bench.procstat import cpu_s
from bench.v2_relay import CONTENT as RELAY_CONTENT
from bench.v2_relay import TOPIC as RELAY_TOPIC
from tests.helpers.jsproc import GoPeer, JsPeer

__all__ = ["cli", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]
SIZE = 300
POW = 0.002
TTL = 10
MAGIC = b"wbsb"  # a stamped payload: MAGIC ‖ seq (8 bytes) ‖ send time ns (8 bytes) ‖ filler, as the Go harnesses
POLL = 0.2
QUIET = 3.0  # relay: the receiver's count has not moved for this long after the last publish: it is over
GO_V2_ARGS = ("-host", "127.0.0.1", "-cluster-id", "0", "-shards", "0", "-log-level", "error")


def _load_avg() -> list[float]:
    return list(os.getloadavg())


def _per_msg(seconds: float, n: int) -> float | None:
    return round(seconds / n * 1e6, 1) if n else None


def _tcp_addr(ready: dict[str, Any]) -> str:
    return str(next(a for a in ready["multiaddrs"] if "/ws" not in a))


async def _start(nursery: trio.Nursery, impl: str) -> tuple[JsPeer, dict[str, Any]]:
    """A relay node process: go-waku (``wakuv2`` harness) or ours (this module's ``_ours`` worker)."""
    if impl == "gowaku":
        peer = await GoPeer.start_go(nursery, "wakuv2", GO_V2_ARGS)
    else:
        peer = await JsPeer.spawn(nursery, [sys.executable, "-m", "bench.sidebyside", "_ours"], ROOT, "ours",
                                  {"PYTHONPATH": str(ROOT)})
    return peer, (await peer.wait_event("ready", timeout=90))[0]


async def _settle(stats: Callable[[], Awaitable[list[dict[str, Any]]]], pids: list[int], want: list[int],
                  done: trio.Event, quiet: float) -> tuple[list[dict[str, Any]], list[float]]:
    """Poll the receivers' counts until each has ``want`` or, once ``done`` (every publish returned),
    nothing moved for ``quiet`` s.  Returns the counts and the processes' CPU at the poll that saw the
    last arrival (so the idle tail is not charged to the messages)."""
    last: list[dict[str, Any]] = await stats()
    cpu = [cpu_s(p) for p in pids]
    since = trio.current_time()
    while True:
        await trio.sleep(POLL)
        now = await stats()
        snap = [cpu_s(p) for p in pids]
        if [s["received"] for s in now] != [s["received"] for s in last]:
            last, cpu, since = now, snap, trio.current_time()
        if all(s["received"] >= w for s, w in zip(last, want, strict=True)):
            return last, cpu
        if done.is_set() and trio.current_time() - since > quiet:
            return last, cpu


# -- relay: two go-waku processes, two of ours ---------------------------------------------------

async def _relay_run(impl: str, n: int, rate: float) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        recv, r_ready = await _start(nursery, impl)
        pub, _ = await _start(nursery, impl)
        try:
            for peer in (recv, pub):
                await peer.request("relay_stats", mute=True, reset=True)
            await pub.request("connect", multiaddr=_tcp_addr(r_ready))
            # until a probe crosses (the publisher has the receiver on the topic), then two heartbeats
            with trio.fail_after(60):
                while (await recv.request("relay_stats"))["received"] == 0:
                    await pub.request("publish_many", pubsub_topic=RELAY_TOPIC, content_topic=RELAY_CONTENT,
                                      count=1, size=SIZE, hashes=False)
                    await trio.sleep(0.5)
            await trio.sleep(2.0)
            await recv.request("relay_stats", reset=True)
            pids = [pub.pid, recv.pid]
            cpu0 = [cpu_s(p) for p in pids]
            reply: dict[str, Any] = {}
            done = trio.Event()

            async def publish() -> None:
                reply.update(await pub.request("publish_many", timeout=n / (rate or 100) + 300,
                                               pubsub_topic=RELAY_TOPIC, content_topic=RELAY_CONTENT, count=n,
                                               size=SIZE, rate=int(rate), stamp=True, first_seq=1, hashes=False))
                done.set()

            async def stats() -> list[dict[str, Any]]:
                return [await recv.request("relay_stats")]

            async with trio.open_nursery() as inner:
                inner.start_soon(publish)
                (got,), cpu1 = await _settle(stats, pids, [n], done, QUIET)
        finally:
            with trio.CancelScope(shield=True):
                for peer in (pub, recv):
                    await peer.aclose()
        nursery.cancel_scope.cancel()
    pub_cpu, recv_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    received = int(got["received"])
    span = (got["last_ns"] - reply["start_ns"]) / 1e9 if received else 0.0
    return {"impl": impl, "rate": rate or "max", "sent": n, "delivered": received, "lost": n - received,
            "doubled": got.get("doubled", 0), "publish_s": round(reply["seconds"], 2),
            "delivered_msg_s": round(received / span, 1) if span > 0 else 0.0,
            "cpu_us_per_msg": {"publisher": _per_msg(pub_cpu, received), "receiver": _per_msg(recv_cpu, received),
                               "total": _per_msg(pub_cpu + recv_cpu, received)},
            "cpu_s": {"publisher": round(pub_cpu, 2), "receiver": round(recv_cpu, 2)},
            "latency_ms": {k: (round(v, 1) if v is not None else None) for k, v in got["latency_ms"].items()}}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


async def _relay(n: int, rate: float) -> dict[str, Any]:
    load0 = _load_avg()
    runs = {impl: {mode: await _relay_run(impl, n, r) for mode, r in (("max", 0.0), (f"rate_{int(rate)}", rate))}
            for impl in ("gowaku", "ours")}
    ratio = {mode: {"msg_s": _ratio(runs["ours"][mode]["delivered_msg_s"], runs["gowaku"][mode]["delivered_msg_s"]),
                    "cpu_us_per_msg": _ratio(runs["ours"][mode]["cpu_us_per_msg"]["total"],
                                             runs["gowaku"][mode]["cpu_us_per_msg"]["total"])}
             for mode in runs["ours"]}
    return {"messages": n, "payload_bytes": SIZE, "gowaku": runs["gowaku"], "ours": runs["ours"],
            "ratio_ours_over_gowaku": ratio, "load_avg": {"start": load0, "end": _load_avg()}}


# -- bridge: status-go <-> waku-bridge <-> go-waku --------------------------------------------------

async def _bridge_step(sg: JsPeer, gw: JsPeer, b: BridgeProc, rate: float, seconds: float,
                       first: int) -> dict[str, Any]:
    n = int(rate * seconds)
    for peer, cmd in ((sg, "envelope_stats"), (gw, "relay_stats")):
        await peer.request(cmd, reset=True)
    st0 = await trio.to_thread.run_sync(b.status)
    pids = [b.proc.pid, sg.pid, gw.pid]
    cpu0 = [cpu_s(p) for p in pids]
    replies: dict[str, dict[str, Any]] = {}
    done = trio.Event()

    async def v1_load() -> None:
        replies["v1"] = await sg.request("post_many", timeout=seconds + 120, topic=BRIDGE_V1_TOPIC.hex(), count=n,
                                         size=SIZE, ttl=TTL, pow=POW, rate=rate, stamp=True, first_seq=first)

    async def v2_load() -> None:
        # version 1: the payload is the envelope's data as it is (RFC 26), so the stamp stays in front
        replies["v2"] = await gw.request("publish_many", timeout=seconds + 120, pubsub_topic=BRIDGE_PUBSUB,
                                         content_topic=BRIDGE_CONTENT, count=n, size=SIZE, rate=int(rate),
                                         stamp=True, first_seq=first, version=1, hashes=False)

    async def loads() -> None:
        async with trio.open_nursery() as ln:
            ln.start_soon(v1_load)
            ln.start_soon(v2_load)
        done.set()

    async def stats() -> list[dict[str, Any]]:
        return [await gw.request("relay_stats", late_ms=TTL * 1000), await sg.request("envelope_stats",
                                                                                      late_ms=TTL * 1000)]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(loads)
        (to_v2, to_v1), cpu1 = await _settle(stats, pids, [n, n], done, float(TTL))
    st1 = await trio.to_thread.run_sync(b.status)
    sent = {"v1_to_v2": n - int(replies["v1"]["errors"]), "v2_to_v1": n}
    got = {"v1_to_v2": to_v2, "v2_to_v1": to_v1}
    delivered = {d: int(got[d]["received"]) for d in got}
    total = sum(delivered.values())
    expired_drops = sum(int(st1["dropped"].get(k, 0)) - int(st0["dropped"].get(k, 0))
                        for k in ("expired", "standby_expired"))
    cpu = [c1 - c0 for c0, c1 in zip(cpu0, cpu1, strict=True)]
    return {"rate_per_direction": rate, "seconds": seconds, "sent": sent, "delivered": delivered,
            "lost": {d: sent[d] - delivered[d] for d in sent},
            "expired": {d: int(got[d]["late"]) for d in got}, "bridge_expired_drops": expired_drops,
            # what the bridge says it published (waku_bridge_transfers_total): delivered below it was
            # lost after the bridge, on the receiving peer
            "bridged": {d: int(st1["transfers"][d]) - int(st0["transfers"][d]) for d in got},
            "send_seconds": {"v1_to_v2": round(replies["v1"]["seconds"], 2),
                             "v2_to_v1": round(replies["v2"]["seconds"], 2)},
            "post_errors": {"count": replies["v1"]["errors"], "first": replies["v1"]["first_error"]},
            "latency_ms": {d: {q: (round(got[d]["latency_ms"][q], 1) if got[d]["latency_ms"][q] is not None
                                   else None) for q in ("p50", "p99")} for d in got},
            "cpu_us_per_msg": {"bridge": _per_msg(cpu[0], total), "status_go": _per_msg(cpu[1], total),
                               "go_waku": _per_msg(cpu[2], total)},
            "cpu_s": {"bridge": round(cpu[0], 2), "status_go": round(cpu[1], 2), "go_waku": round(cpu[2], 2)},
            "cpu_attribution": "shared", "load_avg": _load_avg()}


async def _bridge(rates: list[float], seconds: float) -> dict[str, Any]:
    load0 = _load_avg()
    steps: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        sg = await GoPeer.start_go(nursery, "wakuv1", ["-port", "0", "-pow", str(POW)])
        gw = await GoPeer.start_go(nursery, "wakuv2", GO_V2_ARGS)
        try:
            sg_ready = (await sg.wait_event("ready", timeout=90))[0]
            gw_ready = (await gw.wait_event("ready", timeout=90))[0]
            await sg.request("envelope_stats", mute=True, reset=True)
            await gw.request("relay_stats", mute=True, reset=True)
            with tempfile.TemporaryDirectory() as tmp:
                b = await trio.to_thread.run_sync(BridgeProc, Path(tmp), sg_ready["enode"], _tcp_addr(gw_ready), POW)
                warm_until = trio.current_time() + 6.0  # past the bridge's 5 s start-up warm-up (bridge/standby.py)
                try:
                    with trio.fail_after(60):
                        while await trio.to_thread.run_sync(b.peers) != {"v1": 1, "v2": 1}:  # noqa: ASYNC110
                            await trio.sleep(0.2)
                        # a probe each way until both cross (the bridge is in go-waku's mesh)
                        seq = 1
                        while True:
                            await sg.request("post_many", topic=BRIDGE_V1_TOPIC.hex(), count=1, size=SIZE, ttl=TTL,
                                             pow=POW, stamp=True, first_seq=seq)
                            await gw.request("publish_many", pubsub_topic=BRIDGE_PUBSUB, content_topic=BRIDGE_CONTENT,
                                             count=1, size=SIZE, stamp=True, first_seq=seq, version=1, hashes=False)
                            seq += 1
                            await trio.sleep(1.0)
                            if ((await gw.request("relay_stats"))["received"]
                                    and (await sg.request("envelope_stats"))["received"]
                                    and trio.current_time() > warm_until):
                                break
                    # every probe has arrived or expired before the first step counts (a v1 probe made
                    # during the warm-up may still be waiting out the echo grace)
                    await trio.sleep(TTL + 1.0)
                    first = 1000
                    for rate in rates:
                        steps.append(await _bridge_step(sg, gw, b, rate, seconds, first))
                        first += int(rate * seconds) + 1
                finally:
                    await trio.to_thread.run_sync(b.stop)
        finally:
            with trio.CancelScope(shield=True):
                for peer in (sg, gw):
                    await peer.aclose()
        nursery.cancel_scope.cancel()
    clean = [s["rate_per_direction"] for s in steps if not any(s["lost"].values())]
    return {"payload_bytes": SIZE, "pow": POW, "ttl": TTL, "steps": steps,
            "max_rate_zero_loss": max(clean) if clean else None,
            "load_avg": {"start": load0, "end": _load_avg()}}


async def run(part: str = "both", messages: int = 10_000, rate: float = 1000.0,
              bridge_rates: tuple[float, ...] = (100.0, 200.0, 300.0, 400.0),
              step_seconds: float = 20.0) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if part in ("relay", "both"):
        out["relay"] = await _relay(messages, rate)
    if part in ("bridge", "both"):
        out["bridge"] = await _bridge(list(bridge_rates), step_seconds)
    return out


# -- our node as a process, on the Go harness's commands ------------------------------------------

async def _ours_worker() -> None:
    """``connect``, ``publish_many``, ``relay_stats`` (the subset of tests/interop/go/wakuv2 that the
    relay runs use) over :class:`bench.v2_relay._Ours`, on stdin/stdout JSON lines."""
    from bench.v2_relay import _Ours

    node = _Ours()
    seen: set[bytes] = set()
    arrivals = {"first": 0, "last": 0, "doubled": 0}
    lat: list[float] = []

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def on_msg(payload: bytes) -> None:
        now = time.time_ns()
        key = payload[:20] if payload[:4] == MAGIC else payload
        if key in seen:
            arrivals["doubled"] += 1
            return
        seen.add(key)
        arrivals["first"] = arrivals["first"] or now
        arrivals["last"] = now
        if payload[:4] == MAGIC:
            lat.append((now - int.from_bytes(payload[12:20], "big")) / 1e6)

    def stats(p: dict[str, Any]) -> dict[str, Any]:
        s = sorted(lat)
        late_ms = float(p.get("late_ms", 0))
        res = {"received": len(seen), "doubled": arrivals["doubled"], "first_ns": arrivals["first"],
               "last_ns": arrivals["last"],
               "stamped": len(s), "late": sum(1 for x in s if late_ms and x > late_ms),
               "latency_ms": {"p50": s[len(s) // 2] if s else None,
                              "p99": s[min(len(s) - 1, len(s) * 99 // 100)] if s else None,
                              "max": s[-1] if s else None}}
        if p.get("reset"):
            seen.clear()
            lat.clear()
            arrivals.update(first=0, last=0, doubled=0)
        return res

    async def publish_many(p: dict[str, Any]) -> dict[str, Any]:
        count, size, rate = int(p.get("count", 1)), int(p.get("size", 16)), float(p.get("rate", 0))
        stamp, seq = bool(p.get("stamp")), int(p.get("first_seq", 0))
        fillers = [os.urandom(size) for _ in range(count)]
        t0, start = trio.current_time(), time.time_ns()
        for i, filler in enumerate(fillers):
            if rate:
                await trio.sleep_until(t0 + i / rate)
            data = filler
            if stamp:
                data = MAGIC + (seq + i).to_bytes(8, "big") + time.time_ns().to_bytes(8, "big") + filler[20:]
            await node.publish(data)
        end = time.time_ns()
        return {"hashes": [], "seconds": (end - start) / 1e9, "start_ns": start, "end_ns": end, "published": count}

    async def handle(p: dict[str, Any]) -> None:
        cmd = p.get("cmd")
        try:
            if cmd == "connect":
                await node.connect(p["multiaddr"])
                res: dict[str, Any] = {}
            elif cmd == "relay_stats":
                res = stats(p)
            elif cmd == "publish_many":
                res = await publish_many(p)
            else:
                raise ValueError(f"unknown command {cmd!r}")
            emit({**res, "id": p.get("id"), "ok": True})
        except Exception as exc:  # the reply carries it, as the Go harness does
            emit({"id": p.get("id"), "ok": False, "error": repr(exc)})

    async with trio.open_nursery() as nursery:
        addr = await node.start(nursery)
        nursery.start_soon(node.received, on_msg)
        emit({"event": "ready", "multiaddrs": [addr]})
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buf = b""
        async for chunk in stdin:
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    nursery.start_soon(handle, json.loads(line))
        nursery.cancel_scope.cancel()  # stdin closed: the run is over


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench sidebyside", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("relay", "bridge", "both"), default="both")
    p.add_argument("--messages", type=int, default=10_000, help="relay: messages per run (default 10 000)")
    p.add_argument("--rate", type=float, default=1000.0, help="relay: the paced run's rate, msg/s (default 1000)")
    p.add_argument("--bridge-rates", default="100,200,300,400",
                   help="bridge: the steps, msg/s per direction, comma-separated (default 100,200,300,400)")
    p.add_argument("--step-seconds", type=float, default=20.0, help="bridge: seconds of load per step (default 20)")
    p.add_argument("--runs", type=int, default=1, help="runs, one JSON line each")
    return p


def cli(argv: list[str]) -> None:
    if argv[:1] == ["_ours"]:
        trio.run(_ours_worker)
        return
    a = _parser().parse_args(argv)
    rates = tuple(float(x) for x in a.bridge_rates.split(",") if x.strip())
    for _ in range(a.runs):
        r = trio.run(lambda: run(a.part, a.messages, a.rate, rates, a.step_seconds))
        print(json.dumps({"bench": "sidebyside", **r}), flush=True)


def main() -> list[dict[str, Any]]:
    """``python -m bench`` (all modules): one run with the defaults."""
    return [trio.run(run)]


if __name__ == "__main__":
    cli(sys.argv[1:])
