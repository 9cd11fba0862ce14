"""Lease rules shared by the backends (pure: time is an argument).

A lease is held by one identity until ``expires_at`` (the backend's clock); every change of holder
increments ``epoch``, the fencing token.  The holder considers itself leader only until
``deadline - safety`` on its own monotonic clock, where deadline = the send time of its last
successful renewal + TTL, so it always steps down before any other instance may take over
(Patroni's demote-before-expiry rule; specs/failover.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from failover.errors import FailoverSetupError

__all__ = ["LeaseRow", "LeaseTiming", "decide", "timing_for"]


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    ttl: float = 10.0
    renew_interval: float = 2.0
    rpc_timeout: float = 1.0
    safety: float = 1.0

    @classmethod
    def for_ttl(cls, ttl: float) -> LeaseTiming:
        return cls(ttl=ttl, renew_interval=ttl / 5, rpc_timeout=min(1.0, ttl / 10), safety=max(0.2, ttl / 10))

    @classmethod
    def for_etcd(cls, ttl: int) -> LeaseTiming:
        """etcd defaults (specs/failover.md §2 table): keepalive TTL/4, RPC timeout and safety TTL/6
        (TTL 10 s: 2.5 / 1.67 / 1.67 s; TTL 3 s: 0.75 / 0.5 / 0.5 s)."""
        return cls(ttl=float(ttl), renew_interval=ttl / 4, rpc_timeout=ttl / 6, safety=ttl / 6)

    def check(self) -> None:
        """Startup invariant: renew + RPC budget + margin must fit in the TTL (Patroni rule)."""
        for key, value in (("ttl", self.ttl), ("renew_interval", self.renew_interval),
                           ("rpc_timeout", self.rpc_timeout), ("safety", self.safety)):
            if not value > 0:
                raise FailoverSetupError(key, f"must be > 0, got {value:g}")
        budget = self.renew_interval + 2 * self.rpc_timeout + self.safety
        if budget >= self.ttl:
            raise FailoverSetupError("ttl", f"renew interval {self.renew_interval:g} s + 2 x RPC timeout "
                              f"{self.rpc_timeout:g} s + safety {self.safety:g} s = {budget:g} s must be < TTL "
                              f"{self.ttl:g} s")

    def check_etcd(self) -> None:
        """etcd grants whole-second TTLs and refuses ones below its minimum (about 2 s with the
        default 1 s election timeout; specs/failover.md §1.2)."""
        if self.ttl != int(self.ttl) or self.ttl < 2:
            raise FailoverSetupError("ttl", f"etcd lease TTLs are whole seconds >= 2, got {self.ttl:g}")
        self.check()


def timing_for(backend: str | None, ttl: float, *, renew_interval: float | None = None,
               rpc_timeout: float | None = None, safety: float | None = None) -> LeaseTiming:
    """The checked timing for a backend URL: defaults derived from the TTL for that
    backend, then the explicit overrides; raises FailoverSetupError if the startup invariant fails."""
    etcd = backend is not None and backend.startswith("etcd://")
    if etcd:
        if ttl != int(ttl) or ttl < 2:
            raise FailoverSetupError("ttl", f"etcd lease TTLs are whole seconds >= 2, got {ttl:g}")
        base = LeaseTiming.for_etcd(int(ttl))
    else:
        base = LeaseTiming.for_ttl(ttl)
    overrides = {k: v for k, v in (("renew_interval", renew_interval), ("rpc_timeout", rpc_timeout),
                                   ("safety", safety)) if v is not None}
    timing = replace(base, **overrides)
    if etcd:
        timing.check_etcd()
    else:
        timing.check()
    return timing


@dataclass(frozen=True, slots=True)
class LeaseRow:
    holder: str | None
    epoch: int
    expires_at: float
    boot_id: str
    locked: bool = False  # the holder held the flock when it last wrote the row


def decide(row: LeaseRow | None, me: str, my_epoch: int | None, now: float, boot_id: str,
           *, have_flock: bool = False) -> tuple[str, LeaseRow | None]:
    """What an acquire/renew attempt does: ("renew" | "take" | "wait", new row or None).

    ``have_flock``: we hold the leader flock right now.  That proves the holder is dead only if the
    row says the holder held the flock itself (the kernel released it on exit); a holder that took
    over by expiry while a stopped zombie still held the flock never had it, so holding the flock
    proves nothing about it.  A renew needs an unexpired row: a lapsed term is never resurrected,
    the next term gets a new epoch.
    """
    if row is None:
        return "take", LeaseRow(me, 1, 0.0, boot_id)
    mine = row.holder == me and my_epoch == row.epoch and row.boot_id == boot_id
    if mine and row.expires_at >= now:
        return "renew", row
    holder_died = have_flock and row.locked and not mine
    free = row.holder is None or row.expires_at < now or row.boot_id != boot_id or holder_died
    if free:
        return "take", LeaseRow(me, row.epoch + 1, 0.0, boot_id)
    return "wait", None
