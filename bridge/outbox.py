"""The v1 -> v2 outbox: what the active holds while the v2 side has no relay peer on the topic.

Pure: no trio, no I/O, no clock of its own (every call takes ``now``, the pipeline's clock);
:class:`bridge.pipeline.Pipeline` is its shell.

A v2 publish with no peer subscribed to the pubsub topic does not fail: gossipsub keeps the
message in its cache and hands it to nobody (nwaku's ``publish`` answers with the number of
peers it reached, js-waku's throws ``NoPeersSubscribedToTopic``).  It happens for seconds at a
time whenever the connections to every relay peer were reset together (and for the moment after
a reconnect when the peer's subscription has arrived but our own stream to it is not negotiated
yet), and a bridge must never lose a message silently.  So the pipeline asks the relay whom a
publish would reach (``V2Node.publish_peers``) first, and a message with nobody to go to waits
here, in arrival order, until a relay peer is back, while its envelope lives (the v1 TTL: a
translation published after it would be a message its sender no longer vouches for).  Bounded:
beyond ``capacity`` the oldest go, each a counted drop, as an expiry is.  The dedup key is
already committed (write-ahead, bridge/pipeline.py), so a restart forgets what waits here: the
same exposure as a crash between the commit and the publish.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bridge.translate import V1ToV2

__all__ = ["Held", "Outbox"]


@dataclass(frozen=True, slots=True)
class Held:
    item: V1ToV2
    expires: float  # the envelope's expiry: dropped if still held then
    sent_at: float  # the envelope's creation second (its place in a takeover, bridge/standby.py)
    received_at: float | None  # when the envelope arrived (the transfer latency counts from it)


class Outbox:
    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._held: OrderedDict[bytes, Held] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def topics(self) -> set[str]:
        return {h.item.pubsub_topic for h in self._held.values()}

    def hold(self, item: V1ToV2, *, expires: float, sent_at: float, received_at: float | None) -> int:
        """Keep ``item`` until its topic has a relay peer; returns how many of the oldest were
        evicted to stay within ``capacity`` (the caller counts each as a drop)."""
        self._held[item.key] = Held(item, expires, sent_at, received_at)
        evicted = 0
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)
            evicted += 1
        return evicted

    def take(self, topics_with_peers: set[str], now: float) -> tuple[list[Held], int]:
        """(the held items whose topic has a relay peer now, oldest first; how many expired).
        Both leave the outbox."""
        ready: list[Held] = []
        expired = 0
        for key, h in list(self._held.items()):
            if h.expires <= now:
                del self._held[key]
                expired += 1
            elif h.item.pubsub_topic in topics_with_peers:
                del self._held[key]
                ready.append(h)
        return ready, expired

    def drain(self) -> list[Held]:
        """Everything held, oldest first (leadership went: the items go to the standby's pending set)."""
        out = list(self._held.values())
        self._held.clear()
        return out
