"""Topic allow/deny lists.  Entries are v1 topics (8 hex digits, 0x optional) or content topics."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Policy"]


def _norm(entry: str) -> str:
    e = entry.strip()
    return e if e.startswith("/") else e.lower().removeprefix("0x")


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

    def allows_content_topic(self, content_topic: str) -> bool:
        """Deny by exact content topic; allow lists are applied to the v1 topic after mapping."""
        return content_topic not in self.deny
