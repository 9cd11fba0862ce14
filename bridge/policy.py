"""Topic allow/deny lists.  Entries are v1 topics (8 hex digits, 0x optional) or content topics."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Policy"]


def _norm(entry: str) -> str:
    e = entry.strip()
    return e if e.startswith("/") else e.lower().removeprefix("0x")


def _v1_topic(entry: str) -> bytes | None:
    """The v1 topic an allow-list entry names, if it names one (a v1 topic or its rfc26 content topic)."""
    hex_ = entry
    if entry.startswith("/waku/1/0x") and entry.endswith("/rfc26"):
        hex_ = entry[len("/waku/1/0x"):-len("/rfc26")].lower()
    elif entry.startswith("/"):
        return None
    if len(hex_) != 8:
        return None
    try:
        return bytes.fromhex(hex_)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    allow: frozenset[str] = field(default_factory=frozenset)
    deny: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_lists(cls, allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()) -> Policy:
        return cls(frozenset(_norm(a) for a in allow), frozenset(_norm(d) for d in deny))

    def _ok(self, names: tuple[str, ...]) -> bool:
        if any(n in self.deny for n in names):
            return False
        return not self.allow or any(n in self.allow for n in names)

    def allows_v1_topic(self, topic: bytes) -> bool:
        return self._ok((topic.hex(), f"/waku/1/0x{topic.hex()}/rfc26"))

    def v1_interest(self) -> tuple[bytes, ...] | None:
        """The v1 topics this policy can let through (None: every topic, no allow list).

        With an allow list only its v1-topic entries (``1a2b3c4d`` or ``/waku/1/0x1a2b3c4d/rfc26``)
        can pass :meth:`allows_v1_topic`, minus the denied ones; the bridge's v1 node advertises
        them as its topic interest, so v1 peers do not send what would be dropped here."""
        if not self.allow:
            return None
        topics = {t for t in (_v1_topic(a) for a in self.allow) if t is not None}
        return tuple(sorted(t for t in topics if self.allows_v1_topic(t)))

    def allows_content_topic(self, content_topic: str) -> bool:
        """Deny by exact content topic; allow lists are applied to the v1 topic after mapping."""
        return content_topic not in self.deny
