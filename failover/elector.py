"""The leader-election interface shared by every backend, and the backend chooser.

A backend (``SqliteElector``, ``EtcdElector``) runs one loop (``run``) that campaigns, renews and
watches; everything else reads local state.  The rules all backends keep (specs/failover.md §2):

* ``is_leader()`` is local and cheap: true only while ``monotonic() < deadline - safety``, where
  deadline = send time of the last successful renewal + TTL, so the holder stops acting before any
  other instance may take over (Patroni's demote-before-expiry rule).
* ``fencing_token`` strictly increases over successive terms (epoch / etcd create revision).
* A term that lapsed is never resurrected: after a lapse the next term has a new, higher token.
* Every change of our role sets ``changed`` (then replaces it) and is published to ``observe()``.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

from failover.errors import FailoverError
from failover.health import Health, HealthConfig, PeerHealth, Verdict, verdict

if TYPE_CHECKING:
    from failover.metrics import FailoverMetrics

__all__ = ["Elector", "ElectorCore", "LeaderChange", "StepDown", "Term"]

log = logging.getLogger(__name__)


class StepDown(enum.StrEnum):
    """Why a term ended (the ``reason`` label of ``waku_bridge_step_downs``)."""

    DEADLINE = "deadline"  # no successful renewal in time: stepped down on the local clock
    LOST = "lost"  # the store says someone else holds it / our key or lease is gone
    RESIGN = "resign"  # graceful hand-over
    ERROR = "error"  # the backend failed in a way that ends the session (watch broke, ...)
    UNHEALTHY = "unhealthy"  # a side without peers, a healthy standby exists (failover/health.py)


@dataclass(frozen=True, slots=True)
class Term:
    """One period of leadership: valid while ``lost`` is not set (and ``is_leader()`` holds)."""

    token: int
    identity: str
    lost: trio.Event


@dataclass(frozen=True, slots=True)
class LeaderChange:
    """What ``observe()`` yields: our role changed (``active``), or who leads as far as we know."""

    at: float
    identity: str
    active: bool
    token: int | None
    leader: str | None
    reason: str


@runtime_checkable
class Elector(Protocol):
    """The gate the bridge uses (bridge/app/bridgeservice.py) and what the drills observe."""

    identity: str
    leader: str | None
    fencing_token: int | None
    changed: trio.Event

    @property
    def deadline(self) -> float | None: ...

    def is_leader(self) -> bool: ...

    def is_active(self) -> bool: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    async def campaign(self) -> Term: ...

    async def wait_lost(self) -> None: ...

    async def resign(self) -> None: ...

    def observe(self, max_buffer: int = 64) -> trio.MemoryReceiveChannel[LeaderChange]: ...

    def set_health_source(self, source: Callable[[], Health], config: HealthConfig) -> None: ...


class ElectorCore:
    """Local leadership state common to the backends: term, deadline, watchdog, events, metrics.

    Not thread-safe: touched only from the trio thread.  Backends call ``_elected`` and
    ``_renewed`` after a successful store operation (with the *send* time of that operation) and
    ``_step_down`` on loss.
    """

    def __init__(self, identity: str, *, safety: float, clock: Callable[[], float] = time.monotonic,
                 metrics: FailoverMetrics | None = None) -> None:
        self.identity = identity
        self.safety = safety
        self.clock = clock
        self.metrics = metrics
        self.leader: str | None = None
        self.fencing_token: int | None = None
        self.last_token: int | None = None  # of our latest term, kept after it ends
        self.changed = trio.Event()
        self.elected_at: float | None = None
        self._deadline = -math.inf
        self._term: Term | None = None
        self._observers: list[trio.MemorySendChannel[LeaderChange]] = []
        self._deadline_moved = trio.Event()
        # Health-aware leadership (failover/health.py): off until the app sets a source.
        self.health_source: Callable[[], Health] | None = None
        self.health_config = HealthConfig()
        self.own_health = Health()
        self.others_health: dict[str, PeerHealth] = {}  # the other instances' reports (backend)
        self.withheld = False  # rule 4: this standby does not campaign now
        self.withheld_changed = trio.Event()  # set (then replaced) when ``withheld`` flips
        if metrics is not None:
            metrics.role.set(0)
            metrics.bind(self.deadline_margin)

    # --- the gate ---

    def is_leader(self) -> bool:
        return self.fencing_token is not None and self.clock() < self._deadline - self.safety

    def is_active(self) -> bool:
        return self.is_leader()

    @property
    def deadline(self) -> float | None:
        """Local lease deadline of the current term (send time of the last renewal + TTL)."""
        return self._deadline if self.fencing_token is not None else None

    def deadline_margin(self) -> float:
        """Seconds until we step down unless a renewal succeeds (0 when not leading)."""
        if self.fencing_token is None:
            return 0.0
        return max(0.0, self._deadline - self.safety - self.clock())

    def lapsed(self) -> bool:
        """We hold a term locally but its deadline passed: must step down before doing anything."""
        return self.fencing_token is not None and self.clock() >= self._deadline - self.safety

    # --- health (failover/health.py) ---

    def set_health_source(self, source: Callable[[], Health], config: HealthConfig) -> None:
        """``source()`` returns our health now (the app's :class:`HealthTracker`); from then on
        the backend publishes it and the loop applies :func:`failover.health.verdict`."""
        self.health_source = source
        self.health_config = config

    def health_verdict(self, ttl: float) -> Verdict:
        if self.health_source is None:
            return Verdict.STAY
        self.own_health = self.health_source()
        leading = self.is_leader()
        tenure = self.clock() - self.elected_at if leading and self.elected_at is not None else 0.0
        v = verdict(self.own_health, leading=leading, tenure=tenure, others=self.others_health.values(), ttl=ttl,
                    config=self.health_config)
        withheld = v is Verdict.WITHHOLD
        if withheld != self.withheld:
            log.warning("%s %s campaigning: %s", self.identity, "stops" if withheld else "resumes",
                        f"unhealthy {self.own_health.as_dict()} and a healthy standby exists" if withheld
                        else "healthy, or no healthier instance")
        if withheld != self.withheld:
            self.withheld_changed.set()
            self.withheld_changed = trio.Event()
        self.withheld = withheld
        if self.metrics is not None:
            for side, ok in self.own_health.as_dict().items():
                self.metrics.health.labels(side).set(int(ok))
            self.metrics.withheld.set(int(withheld))
        return v

    # --- the Protocol's waiting side ---

    async def campaign(self) -> Term:
        """Block until this instance is active (``run`` must be running); return the term."""
        while True:
            changed = self.changed
            if self.is_leader() and self._term is not None:
                return self._term
            with trio.move_on_after(self.safety):
                await changed.wait()

    async def wait_lost(self) -> None:
        term = self._term
        if term is None:
            return
        await term.lost.wait()

    def observe(self, max_buffer: int = 64) -> trio.MemoryReceiveChannel[LeaderChange]:
        send, recv = trio.open_memory_channel[LeaderChange](max_buffer)
        self._observers.append(send)
        return recv

    # --- transitions (backends call these) ---

    def _publish(self, reason: str) -> None:
        self.changed.set()
        self.changed = trio.Event()
        ev = LeaderChange(self.clock(), self.identity, self.fencing_token is not None, self.fencing_token,
                          self.leader, reason)
        for ch in list(self._observers):
            try:
                ch.send_nowait(ev)
            except trio.WouldBlock:  # a slow observer loses events, never blocks the elector
                if self.metrics is not None:
                    self.metrics.errors.labels("observer_overflow").inc()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._observers.remove(ch)

    def _elected(self, token: int, sent: float, ttl: float) -> None:
        if self.fencing_token is not None:
            raise FailoverError(f"elected with token {token} while term {self.fencing_token} is still held")
        if self.last_token is not None and token <= self.last_token:
            # Only a reset store does this (a new etcd cluster, a deleted lease file).  The store
            # is still the arbiter, so we lead, but loudly: fenced writes of older terms may
            # now pass in a fresh store.
            log.error("%s: fencing token went backwards (%s after %s): was the lease store reset?",
                      self.identity, token, self.last_token)
            self._backend_error("token_regressed")
        self.fencing_token = self.last_token = token
        self.leader = self.identity
        self._set_deadline(sent + ttl)
        self.elected_at = self.clock()
        self._term = Term(token, self.identity, trio.Event())
        log.info("%s is now the active bridge (fencing token %s)", self.identity, token)
        if self.metrics is not None:
            self.metrics.role.set(1)
            self.metrics.fencing_token.set(token)
            self.metrics.leader_changes.labels("elected").inc()
        self._publish("elected")

    def _renewed(self, sent: float, ttl: float) -> None:
        # Only ever moves forward: a late reply to an older request must not extend the deadline.
        if sent + ttl > self._deadline:
            self._set_deadline(sent + ttl)

    def _set_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        self._deadline_moved.set()
        self._deadline_moved = trio.Event()

    def _step_down(self, reason: StepDown, detail: str = "") -> None:
        if self.fencing_token is None:
            return
        token, self.fencing_token = self.fencing_token, None
        self._deadline = -math.inf
        if self.leader == self.identity:
            self.leader = None
        log.warning("%s stepped down (token %s): %s%s", self.identity, token, reason.value,
                    f" ({detail})" if detail else "")
        if self.metrics is not None:
            self.metrics.role.set(0)
            self.metrics.leader_changes.labels("lost").inc()
            self.metrics.step_downs.labels(reason.value).inc()
        if self._term is not None:
            self._term.lost.set()
        self._publish(reason.value)

    def _backend_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(kind).inc()

    def _rpc_done(self, op: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.rpc.labels(op).observe(seconds)

    async def _watchdog(self, on_lapse: Callable[[], None]) -> None:
        """Step down at ``deadline - safety`` even if the renew loop is stuck in an RPC.

        ``on_lapse`` lets the backend drop session state (the flock, the lease) at that moment.
        """
        while True:
            moved = self._deadline_moved
            if self.fencing_token is None:
                await moved.wait()
                continue
            wait = self._deadline - self.safety - self.clock()
            if wait <= 0:
                self._step_down(StepDown.DEADLINE, "no successful renewal in time")
                on_lapse()
                continue
            with trio.move_on_after(wait):
                await moved.wait()
