"""Lease rules shared by the backends (pure: time is an argument).

A lease is held by one identity until ``expires_at`` (the backend's clock); every change of holder
increments ``epoch``, the fencing token.  The holder considers itself leader only until
``deadline - safety`` on its own monotonic clock, where deadline = the send time of its last
successful renewal + TTL, so it always steps down before any other instance may take over
(Patroni's demote-before-expiry rule; specs/failover.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import ConfigError

__all__ = ["LeaseRow", "LeaseTiming", "decide"]


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    ttl: float = 10.0
    renew_interval: float = 2.0
    rpc_timeout: float = 1.0
    safety: float = 1.0

    @classmethod
    def for_ttl(cls, ttl: float) -> LeaseTiming:
        return cls(ttl=ttl, renew_interval=ttl / 5, rpc_timeout=min(1.0, ttl / 10), safety=max(0.2, ttl / 10))

    def check(self) -> None:
        """Startup invariant: renew + RPC budget + margin must fit in the TTL (Patroni rule)."""
        budget = self.renew_interval + 2 * self.rpc_timeout + self.safety
        if budget >= self.ttl:
            raise ConfigError("failover.ttl", f"renew interval {self.renew_interval:g} s + 2 x RPC timeout "
                              f"{self.rpc_timeout:g} s + safety {self.safety:g} s = {budget:g} s must be < TTL "
                              f"{self.ttl:g} s")


@dataclass(frozen=True, slots=True)
class LeaseRow:
    holder: str | None
    epoch: int
    expires_at: float
    boot_id: str


def decide(row: LeaseRow | None, me: str, my_epoch: int | None, now: float, boot_id: str,
           *, force: bool = False) -> tuple[str, LeaseRow | None]:
    """What an acquire/renew attempt does: ("renew" | "take" | "wait", new row or None).

    ``force``: the previous holder is known dead (its flock was released by the kernel).
    """
    if row is None:
        return "take", LeaseRow(me, 1, 0.0, boot_id)
    if row.holder == me and my_epoch == row.epoch and row.boot_id == boot_id:
        return "renew", row
    free = row.holder is None or row.expires_at < now or row.boot_id != boot_id or force
    if free:
        return "take", LeaseRow(me, row.epoch + 1, 0.0, boot_id)
    return "wait", None
