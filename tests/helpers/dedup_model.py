"""The dedup ledger's reference semantics: the ``OrderedDict`` cache that ``bridge.dedup`` used
until 2026-12 (kept as the model of the model-based test and as the "before" of the RSS bench)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["OrderedDictDedupCache"]


class OrderedDictDedupCache:
    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # key -> expires_at, oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, key: bytes, now: float) -> bool:
        exp = self._entries.get(key)
        return exp is not None and exp >= now

    def add(self, key: bytes, now: float, expires_at: float | None = None) -> list[bytes]:
        self._entries[key] = now + self.window if expires_at is None else expires_at
        self._entries.move_to_end(key)
        evicted = []
        while len(self._entries) > self.capacity:
            k, _ = self._entries.popitem(last=False)
            evicted.append(k)
        return evicted

    def expire(self, now: float) -> int:
        n = 0
        while self._entries:
            exp = next(iter(self._entries.values()))
            if exp >= now:
                break
            self._entries.popitem(last=False)
            n += 1
        return n
