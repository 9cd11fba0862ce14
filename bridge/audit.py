"""The standby's audit of the active: did every message we saw on one side reach the other?

Translation is deterministic (bridge/translate.py: same bytes, same dedup key on both sides), so a
standby, which receives what the active receives, can check the active's work without asking it:
a message that it sees on one side and would have bridged is an *expectation*; the translation
arriving on the other side (the same dedup key, seen from the other side) *meets* it; an
expectation still open ``deadline_s`` later is a *miss*.  Every met or missed expectation is
*checked*.  ``missed / checked`` per direction is the active's loss rate as seen from here
(``waku_bridge_audit_checked_total`` / ``waku_bridge_audit_missed_total``; docs/operations.md
"Audit below 99.9 %").

Pure: no trio, no I/O, no clock of its own (``now`` is passed in).  Memory is bounded: at most
``max_outstanding`` open expectations (the oldest go first, not counted: an audit that cannot keep
up must not report misses it did not observe) and the last ``recent`` misses for ``/status``.

The direction is the side a message was first seen on.  When the translation reaches us before
the original (rare: a standby defers v2 messages shaped like v1 translations by the echo grace,
bridge/standby.py), the expectation is recorded in the other direction and the original meets it:
the check is still right, only its label is swapped.

Only while another instance is active: the shell calls :meth:`reset` when we become active or no
leader is known (what was open then is bridged by the takeover, or by no one, and is not the
active's miss).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["Audit", "AuditConfig", "Miss"]


@dataclass(frozen=True, slots=True)
class AuditConfig:
    deadline_s: float = 10.0  # v2->v1 includes PoW mining and the v1 peers' 300 ms batching
    max_outstanding: int = 100_000
    recent: int = 64  # the last misses kept for /status


@dataclass(frozen=True, slots=True)
class Miss:
    key: bytes  # the dedup key: sha256(v1 topic || v1 data), the same on both sides
    direction: str  # bridge.metrics.V1_TO_V2 or V2_TO_V1
    seen_at: float


class Audit:
    """Open expectations (dedup key -> direction, deadline), the counts and the recent misses."""

    def __init__(self, config: AuditConfig, directions: tuple[str, str]) -> None:
        self.config = config
        self.directions = directions  # (from v1, from v2)
        self._open: OrderedDict[bytes, tuple[str, float, float]] = OrderedDict()  # key -> (dir, seen, due)
        self.checked = dict.fromkeys(directions, 0)
        self.missed = dict.fromkeys(directions, 0)
        self.recent: deque[Miss] = deque(maxlen=config.recent)
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def expect(self, key: bytes, *, from_v1: bool, now: float) -> None:
        """We saw ``key`` on one side (v1 if ``from_v1``) and the active should bridge it."""
        if key in self._open:
            return
        self._open[key] = (self.directions[0 if from_v1 else 1], now, now + self.config.deadline_s)
        while len(self._open) > self.config.max_outstanding:
            self._open.popitem(last=False)
            self.evicted += 1

    def seen(self, key: bytes, *, from_v1: bool) -> str | None:
        """``key`` arrived on a side (v1 if ``from_v1``): if it meets an expectation of the other
        side, that is one check passed; returns its direction (None: nothing met)."""
        entry = self._open.get(key)
        if entry is None or (entry[0] == self.directions[0]) == from_v1:
            return None  # unknown, or a re-offer on the same side (a v1 pool's resend)
        del self._open[key]
        self.checked[entry[0]] += 1
        return entry[0]

    def sweep(self, now: float) -> list[Miss]:
        """The expectations past their deadline: each a check failed."""
        out: list[Miss] = []
        # Insertion order is deadline order (one deadline for all); a clock step back only delays.
        while self._open:
            key, (direction, seen_at, due) = next(iter(self._open.items()))
            if due > now:
                break
            del self._open[key]
            self.checked[direction] += 1
            self.missed[direction] += 1
            miss = Miss(key, direction, seen_at)
            self.recent.append(miss)
            out.append(miss)
        return out

    def reset(self) -> int:
        """Forget the open expectations (not counted); returns how many."""
        n = len(self._open)
        self._open.clear()
        return n

    def ratio(self) -> float | None:
        """Share of checked messages that the active bridged, both directions (None: none checked)."""
        checked = sum(self.checked.values())
        return None if checked == 0 else (checked - sum(self.missed.values())) / checked
