"""Elector-only candidate processes (``python -m failover``) and the checks every drill shares."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from tests.helpers.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
STEP_DOWNS = ("deadline", "lost", "error", "resign")

__all__ = ["ROOT", "STEP_DOWNS", "Candidate", "Takeover", "assert_one_active", "spawn_pair", "takeover_drill",
           "zombie_drill"]


class Candidate:
    def __init__(self, url: str, identity: str, *, ttl: float = 3.0, renew: float = 0.5, rpc_timeout: float = 0.5,
                 safety: float = 0.5, extra: tuple[str, ...] = ()) -> None:
        self.identity = identity
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "failover", url, identity, "--ttl", str(ttl), "--renew", str(renew),
             "--rpc-timeout", str(rpc_timeout), "--safety", str(safety), *extra],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.events: list[dict[str, Any]] = []
        self.stopped = False

    async def pump(self) -> None:
        assert self.proc.stdout is not None
        while line := await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True):
            self.events.append(json.loads(line))

    def states(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "state"]

    @property
    def leader(self) -> bool:
        s = self.states()
        return bool(s and s[-1]["leader"]) and self.proc.poll() is None and not self.stopped

    @property
    def token(self) -> int | None:
        s = self.states()
        return s[-1]["token"] if s else None

    def renewals(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "renewed"]

    def elected(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "elected"]

    def since(self, t: float) -> list[dict[str, Any]]:
        return [e for e in self.events if e["t"] >= t]

    def send(self, sig: int) -> float:
        t = time.monotonic()
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False
        return t

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()


async def spawn_pair(nursery: trio.Nursery, url: str, names: tuple[str, str] = ("A", "B"),
                     **kw: Any) -> tuple[Candidate, Candidate]:
    """Start two candidates; return (leader, standby) once one leads."""
    a = Candidate(url, names[0], **kw)
    nursery.start_soon(a.pump)
    await wait_until(lambda: a.leader, 15, f"{names[0]} to lead")
    b = Candidate(url, names[1], **kw)
    nursery.start_soon(b.pump)
    await wait_until(lambda: bool(b.states()), 15, f"{names[1]} to start")
    return a, b


def assert_one_active(cands: list[Candidate]) -> Candidate:
    live = [c for c in cands if c.proc.poll() is None and not c.stopped]
    active = [c for c in live if c.leader]
    assert len(active) == 1, [(c.identity, c.states()[-1:]) for c in live]
    return active[0]


def _leads(c: Candidate) -> Callable[[], bool]:
    return lambda: c.leader


def _reported(c: Candidate, since: float = 0.0) -> Callable[[], bool]:
    return lambda: bool(c.since(since) if since else c.states())


def _acted_as_leader(events: list[dict[str, Any]]) -> bool:
    return any(e["event"] == "elected" or (e["event"] == "state" and e["leader"]) for e in events)


@dataclass(frozen=True, slots=True)
class Takeover:
    victim: Candidate
    heir: Candidate
    signalled: float
    elected: float  # the heir's "elected" event


async def takeover_drill(nursery: trio.Nursery, url: str, sig: int, *, rounds: int = 2,
                         record: list[Takeover] | None = None, **kw: Any) -> list[int]:
    """Fault the active ``rounds`` times (a fresh candidate replaces each victim); the standby
    takes over each time with a higher token and exactly one instance is active afterwards."""
    leader, standby = await spawn_pair(nursery, url, **kw)
    cands = [leader, standby]
    tokens = [int(leader.token or 0)]
    try:
        for r in range(rounds):
            t_sig = leader.send(sig)
            await wait_until(_leads(standby), 15, f"round {r}: {standby.identity} to take over")
            if record is not None:
                elected = next(e["t"] for e in standby.since(t_sig) if e["event"] == "elected")
                record.append(Takeover(leader, standby, t_sig, elected))
            code = await trio.to_thread.run_sync(leader.proc.wait)
            if sig == signal.SIGTERM:
                assert code == 0
                assert any(e["event"] == "resign" for e in leader.events)  # graceful: it resigned
            assert standby.token is not None and standby.token > tokens[-1]
            tokens.append(standby.token)
            fresh = Candidate(url, leader.identity, **kw)  # the restarted instance joins as standby
            nursery.start_soon(fresh.pump)
            cands.append(fresh)
            await wait_until(_reported(fresh), 15, "the restarted candidate")
            await trio.sleep(0.5)
            assert assert_one_active(cands) is standby
            assert standby.token == tokens[-1]
            leader, standby = standby, fresh
    finally:
        for c in cands:
            c.stop()
    return tokens


async def zombie_drill(nursery: trio.Nursery, url: str, *, rounds: int = 2, after_renewal: bool = False,
                       **kw: Any) -> list[int]:
    """SIGSTOP the active past its TTL, wait for the takeover, SIGCONT: the zombie's first act is
    to step down, it never acts as leader again, the new leader keeps its term (no flap)."""
    leader, standby = await spawn_pair(nursery, url, **kw)
    tokens = [int(leader.token or 0)]
    try:
        for r in range(rounds):
            if after_renewal:
                # Freeze right after a renewal committed, not inside its transaction: a process
                # frozen while holding SQLite's write lock blocks every other instance until it
                # continues (a documented limit of the sqlite backend, not what this drill tests).
                n = len(leader.renewals())
                await wait_until(lambda: len(leader.renewals()) > n, 5, "a renewal")  # noqa: B023
            leader.send(signal.SIGSTOP)
            await wait_until(_leads(standby), 15, f"round {r}: {standby.identity} to take over")
            took = standby.token
            assert took is not None and took > tokens[-1]
            t_cont = leader.send(signal.SIGCONT)
            await wait_until(_reported(leader, t_cont), 5, "the zombie to report")
            first = leader.since(t_cont)[0]
            assert first["event"] in ("deadline", "lost") or (first["event"] == "state" and not first["leader"]), first
            await trio.sleep(1.0)
            assert not _acted_as_leader(leader.since(t_cont)), leader.since(t_cont)
            assert standby.leader and standby.token == took  # no flap back
            assert not any(e["event"] in STEP_DOWNS for e in standby.since(t_cont))
            assert assert_one_active([leader, standby]) is standby
            tokens.append(took)
            leader, standby = standby, leader
    finally:
        leader.stop()
        standby.stop()
    return tokens
