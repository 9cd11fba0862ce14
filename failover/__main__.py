"""``python -m failover URL IDENTITY``: an elector-only candidate that prints its role as JSON lines.

For operators (who is active on this election?) and for the drills and the takeover benchmark,
which run candidates as real processes and kill, stop and continue them.  URL is what
``failover.backend`` takes (``sqlite:PATH``, ``etcd://HOST:PORT[,...][/NAME]``).  SIGTERM/SIGINT
resign gracefully.  Lines (``t`` = CLOCK_MONOTONIC, comparable across processes on one host):

* ``{"event": "state", "leader": bool, "token": int|null, "t": ...}`` whenever ``is_leader()`` or the
  token changes (polled every 5 ms: what a bridge's gate would see);
* ``{"event": "elected"|"deadline"|"lost"|"resign"|"error", "token": ..., "t": ...}`` per change;
* with ``--trace-renewals``: ``{"event": "renewed", "deadline": ...}`` when the active's local
  deadline (send time of the last successful renewal + TTL) moves.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import trio

from failover.elector import Elector, LeaderChange
from failover.errors import FailoverSetupError
from failover.etcd.security import EtcdSecurity
from failover.lease import LeaseTiming, timing_for
from failover.url import parse_failover_url

__all__ = ["main"]


def _emit(**fields: object) -> None:
    print(json.dumps({"t": time.monotonic(), **fields}), flush=True)


def build(url: str, identity: str, timing: LeaseTiming, *, flock: bool,
          security: EtcdSecurity | None = None) -> Elector:
    if url.startswith("etcd://"):
        from failover.etcd.elector import EtcdElector
        from failover.etcd.wire import parse_endpoints

        endpoints, name = parse_endpoints(url)
        return EtcdElector(endpoints, identity, name=name, timing=timing, security=security)
    if url.startswith("sqlite:"):
        from failover.sqlite_backend import SqliteElector

        return SqliteElector(Path(url.removeprefix("sqlite:")), identity, timing=timing, flock=flock)
    elector = parse_failover_url(url, identity=identity, data_dir=Path("."), ttl=timing.ttl)
    if elector is None:
        raise SystemExit("failover backend 'none' has no election to join")
    return elector


async def _follow(elector: Elector, trace: bool) -> None:
    last: tuple[bool, int | None] | None = None
    deadline = None
    while True:
        state = (elector.is_leader(), elector.fencing_token)
        if state != last:
            _emit(event="state", leader=state[0], token=state[1])
            last = state
        if trace and elector.deadline != deadline and elector.deadline is not None:
            deadline = elector.deadline
            _emit(event="renewed", deadline=deadline)
        await trio.sleep(0.005)


async def _events(changes: trio.MemoryReceiveChannel[LeaderChange]) -> None:
    async for ch in changes:
        _emit(event=ch.reason, token=ch.token, active=ch.active)


async def amain(args: argparse.Namespace) -> None:
    timing = timing_for(args.url, args.ttl, renew_interval=args.renew, rpc_timeout=args.rpc_timeout,
                        safety=args.safety)
    security = None
    if args.cacert or args.cert or args.user:
        security = EtcdSecurity.of(args.cacert, args.cert, args.key, args.user,
                                   os.environ.get("WAKU_BRIDGE_FAILOVER_ETCD_PASSWORD"))
    elector = build(args.url, args.identity, timing, flock=not args.no_flock, security=security)
    elector_scope = trio.CancelScope()
    finished = trio.Event()

    async def run_elector(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with elector_scope:
            await elector.run(task_status=task_status)
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_events, elector.observe())  # subscribed before run() starts
        await nursery.start(run_elector)
        nursery.start_soon(_follow, elector, args.trace_renewals)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        elector_scope.cancel()  # run()'s shielded cleanup resigns
        await finished.wait()
        await trio.sleep(0.05)  # let the printers report the resign
        nursery.cancel_scope.cancel()
    _emit(event="exit")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m failover", description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("identity")
    p.add_argument("--ttl", type=float, default=10.0)
    p.add_argument("--renew", type=float, help="default: derived from the TTL for the backend")
    p.add_argument("--rpc-timeout", type=float)
    p.add_argument("--safety", type=float)
    p.add_argument("--no-flock", action="store_true", help="sqlite: no flock fast path (takeover by expiry)")
    p.add_argument("--trace-renewals", action="store_true")
    p.add_argument("--cacert", help="etcd: CA bundle (PEM); turns on https")
    p.add_argument("--cert", help="etcd: client certificate (PEM)")
    p.add_argument("--key", help="etcd: client key (PEM)")
    p.add_argument("--user", help="etcd: user; the password comes from $WAKU_BRIDGE_FAILOVER_ETCD_PASSWORD")
    args = p.parse_args(argv)
    try:
        trio.run(amain, args)
    except FailoverSetupError as exc:
        raise SystemExit(f"python -m failover: {exc}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
