"""End-to-end bridge figures (docs/performance.md "## Bridge").

Sockets: a real ``waku-bridge --peer-id A`` *process* between a Waku v1 node and a Waku v2 node
that run in this process on loopback (the bridge dials both).  A fresh bridge (and data dir)
per phase, because the bridge's v1 pool holds every envelope until it expires (4096 slots):

* ``throughput``: N pre-built 300 B messages injected on one side as fast as the source node
  takes them; msg/s = N / (first send -> last arrival on the other side).  v1->v2 at PoW 0.002;
  v2->v1 with the bridge's PoW target (= its ``--waku-v1-pow``) 0.002 and 0.2.
* ``latency``: 50 msg/s per direction, both directions at once, for 20 s; end-to-end latency
  (source node send -> arrival at the other network's node) p50/p99.  It includes the v1
  forwarding tick (the bridge's v1 node flushes every 300 ms, like nim and status-go).
* the bridge process's RSS (VmRSS) at the end of each phase.

Soak (sockets): ``--soak N [RATE]``: one bridge process for the whole run, N messages in all, half
each way at RATE per direction (default 250/s), 10 s TTLs as in production; the bridge's RSS is
sampled every 30 s, and delivery is counted at the end (nothing may be lost or doubled).

Core (no sockets): ``--core N`` (a child process) pushes N messages, half each way, through the
real :class:`bridge.pipeline.Pipeline` with the real dedup ledger (SQLite file, write-ahead
commit per message, capacity 1 M so every key stays in memory), real translation and PoW 0.002
mining, into in-memory ports; it reports msg/s and the RSS after the run.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client import CollectorRegistry

from bench.procstat import status_kib
from bridge.app.ports import free_ports
from bridge.dedup import DedupStore
from bridge.metrics import BridgeMetrics
from bridge.pipeline import Pipeline, PipelineConfig
from tests.helpers.wait import wait_until
from v1.node import V1Node, V1NodeConfig
from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce
from v2.core.message import WakuMessage
from v2.node import V2Node, V2NodeConfig

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
TOPIC = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"
SIZE = 300


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _envelope(seq: int, now: float, ttl: int = 60) -> Envelope:
    data = seq.to_bytes(8, "big") + os.urandom(SIZE - 8)
    expiry = int(now) + ttl
    nonce = mine_smallest_nonce(expiry, ttl, TOPIC, data, 0.002)
    assert nonce is not None
    return Envelope(expiry, ttl, TOPIC, data, nonce)


def _message(seq: int) -> WakuMessage:
    return WakuMessage(seq.to_bytes(8, "big") + os.urandom(SIZE - 8), CONTENT, version=1, timestamp=time.time_ns())


@dataclass
class Net:
    v1: V1Node
    v2: V2Node
    v1_arrivals: dict[int, float] = field(default_factory=dict)  # seq -> time (bridged v2->v1)
    v2_arrivals: dict[int, float] = field(default_factory=dict)
    doubled: dict[str, int] = field(default_factory=lambda: {"v1": 0, "v2": 0})  # a seq seen again


class BridgeProc:
    def __init__(self, data: Path, v1: str, v2: str, pow_target: float, extra: tuple[str, ...] = ()) -> None:
        p1, p2, ws, self.http = free_ports(4)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.app.cli", "--peer-id", "A", "--listen-address", "127.0.0.1",
             "--devp2p-tcp-port", str(p1), "--libp2p-tcp-port", str(p2), "--websocket-port", str(ws),
             "--metrics-server-port", str(self.http), "--data-dir", str(data), "--staticnode-v1", v1,
             "--staticnode-v2", v2, "--cluster-id", "0", "--num-shards-in-network", "1",
             "--waku-v1-pow", str(pow_target), "--log-level", os.environ.get("BENCH_BRIDGE_LOG", "warning"), *extra],
            stdout=subprocess.PIPE, stderr=(data / "bridge.log").open("w"), text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.log = data / "bridge.log"
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())

    def status(self) -> dict[str, Any]:
        r: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.http}/status", timeout=5).json()
        return r

    def peers(self) -> dict[str, int]:
        try:
            p: dict[str, int] = self.status()["peers"]
            return p
        except httpx.HTTPError:  # not serving yet
            return {}

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.http}/metrics", timeout=5).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


async def _with_bridge(net: Net, pow_target: float, body: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        b = await trio.to_thread.run_sync(BridgeProc, Path(tmp), net.v1.enode, net.v2.listen_addrs[0], pow_target,
                                          extra)
        try:
            with trio.fail_after(30):
                while await trio.to_thread.run_sync(b.peers) != {"v1": 1, "v2": 1}:  # noqa: ASYNC110
                    await trio.sleep(0.2)
            bridge_v2 = (await trio.to_thread.run_sync(b.status))["v2"]["peer_id"]
            # this bridge (not the previous phase's, which may linger in the mesh) is in our mesh
            await wait_until(lambda: bridge_v2 in net.v2.relay.mesh_peers(PUBSUB), 30, interval=0.02)
            await trio.sleep(1.5)  # the bridge's mesh settles (heartbeat 1 s)
            net.v1_arrivals.clear()
            net.v2_arrivals.clear()
            try:
                out: dict[str, Any] = await body(b)
            except Exception:
                print(b.log.read_text()[-3000:], file=sys.stderr)
                raise
            out["bridge_rss_mib"] = round(status_kib(b.proc.pid) / 1024, 1)
            st = await trio.to_thread.run_sync(b.status)
            out["dropped"] = st["dropped"]
            return out
        finally:
            await trio.to_thread.run_sync(b.stop)


async def _settle(arrivals: dict[int, float], n: int, quiet: float = 5.0, timeout: float = 300) -> None:
    """Until all ``n`` arrived, or nothing new arrived for ``quiet`` seconds (losses are reported)."""
    with trio.move_on_after(timeout):
        last, since = -1, trio.current_time()
        while len(arrivals) < n:
            if len(arrivals) != last:
                last, since = len(arrivals), trio.current_time()
            elif trio.current_time() - since > quiet:
                return
            await trio.sleep(0.05)


async def _throughput(net: Net, direction: str, n: int, pow_target: float) -> dict[str, Any]:
    async def body(_b: BridgeProc) -> dict[str, Any]:
        arrivals = net.v2_arrivals if direction == "v1_to_v2" else net.v1_arrivals
        if direction == "v1_to_v2":
            items = [_envelope(i, time.time()) for i in range(n)]
            t0 = time.perf_counter()
            for e in items:
                await net.v1.post(e)
        else:
            items2 = [_message(i) for i in range(n)]
            t0 = time.perf_counter()
            for m in items2:
                await net.v2.publish(PUBSUB, m)
        await _settle(arrivals, n)
        got = len(arrivals)
        elapsed = (max(arrivals.values()) if arrivals else time.perf_counter()) - t0
        return {"phase": "throughput", "direction": direction, "pow_target": pow_target, "messages": n,
                "delivered": got, "payload": SIZE, "seconds": round(elapsed, 2), "msg_per_s": round(got / elapsed)}

    return await _with_bridge(net, pow_target, body)


async def _latency(net: Net, rate: float, seconds: float) -> dict[str, Any]:
    async def body(b: BridgeProc) -> dict[str, Any]:
        n = int(rate * seconds)
        sent1: dict[int, float] = {}
        sent2: dict[int, float] = {}
        envs = [_envelope(i, time.time(), ttl=60 + int(seconds)) for i in range(n)]  # valid until sent

        async def v1_sender() -> None:
            t0 = trio.current_time()
            for i, e in enumerate(envs):
                await trio.sleep_until(t0 + i / rate)
                sent1[i] = time.perf_counter()
                await net.v1.post(e)

        async def v2_sender() -> None:
            t0 = trio.current_time()
            for i in range(n):
                await trio.sleep_until(t0 + i / rate)
                m = _message(i)
                sent2[i] = time.perf_counter()
                await net.v2.publish(PUBSUB, m)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(v1_sender)
            nursery.start_soon(v2_sender)
        await _settle(net.v2_arrivals, n)
        await _settle(net.v1_arrivals, n)
        lat12 = [(net.v2_arrivals[i] - sent1[i]) * 1000 for i in range(n) if i in net.v2_arrivals]
        lat21 = [(net.v1_arrivals[i] - sent2[i]) * 1000 for i in range(n) if i in net.v1_arrivals]
        hist = _histogram_quantiles(await trio.to_thread.run_sync(b.metrics))
        return {"phase": "latency", "rate_per_direction": rate, "messages_per_direction": n, "payload": SIZE,
                "delivered": {"v1_to_v2": len(lat12), "v2_to_v1": len(lat21)},
                "v1_to_v2_ms": {"p50": round(_pct(lat12, 0.5), 1), "p99": round(_pct(lat12, 0.99), 1),
                                "mean": round(statistics.fmean(lat12), 1), "max": round(max(lat12), 1)},
                "v2_to_v1_ms": {"p50": round(_pct(lat21, 0.5), 1), "p99": round(_pct(lat21, 0.99), 1),
                                "mean": round(statistics.fmean(lat21), 1), "max": round(max(lat21), 1)},
                "bridge_receive_to_publish_s": hist}

    return await _with_bridge(net, 0.002, body)


def _histogram_quantiles(text: str) -> dict[str, dict[str, float]]:
    """Upper bucket bounds of p50/p99 of waku_bridge_latency_seconds, per direction."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != "waku_bridge_latency_seconds":
            continue
        for d in ("v1_to_v2", "v2_to_v1"):
            buckets = sorted((float(s.labels["le"]), s.value) for s in fam.samples
                             if s.name.endswith("_bucket") and s.labels["type"] == d)
            if not buckets or not buckets[-1][1]:
                continue
            total = buckets[-1][1]
            out[d] = {f"p{int(q * 100)}_le": next(le for le, c in buckets if c >= q * total) for q in (0.5, 0.99)}
    return out


async def _phase(run: Any, *args: Any) -> dict[str, Any]:
    """Fresh v1 and v2 nodes per phase: a v1 node re-offers its whole pool to a new peer, which
    would make the next bridge re-bridge the previous phase's traffic."""
    v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.05, pool_capacity=200_000,
                             inbound_capacity=100_000), CollectorRegistry())
    tcp, ws = free_ports(2)
    v2 = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, True, ws, inbound_capacity=100_000),
                CollectorRegistry())
    net = Net(v1, v2)
    async with trio.open_nursery() as nursery:
        await nursery.start(v1.run)
        await nursery.start(v2.run)

        async def collect_v1() -> None:
            async for rec in v1.inbound():
                if rec.envelope.topic != TOPIC:  # only the bench topic is counted (sustained --other-rate)
                    continue
                seq = int.from_bytes(rec.envelope.data[:8], "big")
                if seq in net.v1_arrivals:
                    net.doubled["v1"] += 1
                net.v1_arrivals.setdefault(seq, time.perf_counter())

        async def collect_v2() -> None:
            async for m in v2.messages():
                if m.message.content_topic != CONTENT:
                    continue
                seq = int.from_bytes(m.message.payload[:8], "big")
                if seq in net.v2_arrivals:
                    net.doubled["v2"] += 1
                net.v2_arrivals.setdefault(seq, time.perf_counter())

        nursery.start_soon(collect_v1)
        nursery.start_soon(collect_v2)
        out: dict[str, Any] = await run(net, *args)
        nursery.cancel_scope.cancel()
    return out


async def _sockets() -> list[dict[str, Any]]:
    return [await _phase(_latency, 50.0, 20.0),
            await _phase(_throughput, "v1_to_v2", 3000, 0.002),
            await _phase(_throughput, "v2_to_v1", 3000, 0.002),
            await _phase(_throughput, "v2_to_v1", 2000, 0.2)]


async def _soak(net: Net, total: int, rate: float) -> dict[str, Any]:
    half = total // 2

    async def body(b: BridgeProc) -> dict[str, Any]:
        samples: list[dict[str, float]] = []
        sent = {"v1": 0, "v2": 0}
        t_start = trio.current_time()

        def sample() -> None:
            samples.append({"t_s": round(trio.current_time() - t_start), "sent": sent["v1"] + sent["v2"],
                            "delivered": len(net.v1_arrivals) + len(net.v2_arrivals),
                            "rss_mib": round(status_kib(b.proc.pid) / 1024, 1)})

        async def sampler() -> None:
            while True:
                sample()
                await trio.sleep(30)

        async def v1_sender() -> None:
            t0 = trio.current_time()
            for i in range(half):
                if i % 50 == 0:
                    await trio.sleep_until(t0 + i / rate)
                await net.v1.post(_envelope(i, time.time(), ttl=10))
                sent["v1"] += 1

        async def v2_sender() -> None:
            t0 = trio.current_time()
            for i in range(half):
                if i % 50 == 0:
                    await trio.sleep_until(t0 + i / rate)
                await net.v2.publish(PUBSUB, _message(i))
                sent["v2"] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            async with trio.open_nursery() as senders:
                senders.start_soon(v1_sender)
                senders.start_soon(v2_sender)
            await _settle(net.v2_arrivals, half, quiet=15)
            await _settle(net.v1_arrivals, half, quiet=15)
            sample()
            nursery.cancel_scope.cancel()
        seconds = trio.current_time() - t_start
        # the arrival dicts hold each sequence number once: a doubled message would be a second
        # arrival of a seen number, which the collectors count
        return {"phase": "soak", "messages": 2 * half, "rate_per_direction": rate, "seconds": round(seconds),
                "delivered": {"v1_to_v2": len(net.v2_arrivals), "v2_to_v1": len(net.v1_arrivals)},
                "doubled": dict(net.doubled), "rss_samples": samples}

    return await _with_bridge(net, 0.002, body)


# --- core: 1 M messages through the pipeline without sockets ---


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    def inbound(self) -> Any:
        raise NotImplementedError

    def messages(self) -> Any:
        raise NotImplementedError

    async def post(self, envelope: Envelope) -> Any:
        self.count += 1
        return type("R", (), {"accepted": True})()

    async def publish(self, topic: str, msg: WakuMessage) -> Any:
        self.count += 1

    def peers(self) -> list[Any]:
        return []

    def publish_peers(self, topic: str) -> list[str]:
        return ["sink"]  # a publish always has somewhere to go


async def _core(n: int, db: Path) -> dict[str, Any]:
    rss0 = status_kib()
    clock_t = [time.time()]

    def clock() -> float:
        return clock_t[0]

    dedup = DedupStore(db, window=600, capacity=1_000_000, clock=clock)
    await dedup.open()
    v1, v2 = _Sink(), _Sink()
    p = Pipeline(v1, v2, dedup, BridgeMetrics(CollectorRegistry()),
                 PipelineConfig(cluster_id=0, num_shards=1, pow_target=0.002, echo_grace_s=0), clock=clock)
    t0 = time.perf_counter()
    half = n // 2
    rnd = os.urandom(SIZE)
    for i in range(half):
        # fresh payloads: a counter in front of fixed random bytes (PoW per message is real)
        data = i.to_bytes(8, "big") + rnd[8:]
        expiry = int(clock_t[0]) + 10
        env = Envelope(expiry, 10, TOPIC, data, mine_smallest_nonce(expiry, 10, TOPIC, data, 0.002) or 0)
        await p.on_envelope(env)
        await p.on_message(WakuMessage(b"\x01" + data, CONTENT, version=1, timestamp=int(clock_t[0] * 10**9)))
        clock_t[0] += 0.0005  # 2000 simulated msg/s per direction: every key stays inside the 600 s window
    elapsed = time.perf_counter() - t0
    await dedup.aclose()
    file_mib = round(db.stat().st_size / 2**20, 1)  # noqa: ASYNC240 - once, after the measurement
    assert v1.count == half and v2.count == half, (v1.count, v2.count)
    return {"phase": "core", "messages": 2 * half, "v1_to_v2": v2.count, "v2_to_v1": v1.count,
            "seconds": round(elapsed, 1), "msg_per_s": round(2 * half / elapsed), "dedup_keys": len(dedup),
            "dedup_file_mib": file_mib, "rss_before_mib": round(rss0 / 1024, 1),
            "rss_after_mib": round(status_kib() / 1024, 1),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(core_messages: int = 1_000_000) -> Iterator[dict[str, Any]]:
    yield from trio.run(_sockets)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-m", "bench.bridge_e2e", "--core", str(core_messages),
                              str(Path(tmp) / "dedup.sqlite3")], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        yield json.loads(out.stdout.splitlines()[-1])


if __name__ == "__main__":
    import sys as _sys

    from bench import help_or_continue

    help_or_continue("bench.bridge_e2e", __doc__, _sys.argv[1:], '[N_CORE] | --core N DB | --soak N [RATE]')
    if len(sys.argv) >= 2 and sys.argv[1] == "--core":
        print(json.dumps(trio.run(_core, int(sys.argv[2]), Path(sys.argv[3]))))
    elif len(sys.argv) >= 3 and sys.argv[1] == "--soak":
        rate = float(sys.argv[3]) if len(sys.argv) > 3 else 250.0
        print(json.dumps(trio.run(_phase, _soak, int(sys.argv[2]), rate)))
    else:
        for r in main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000):
            print(json.dumps(r))
