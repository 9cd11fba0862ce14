"""What the pipeline needs of its surroundings, as protocols: a v1 side (:class:`v1.node.V1Node`), a
v2 side (:class:`v2.node.V2Node`) and a gate (:class:`failover.elector.Elector`, or
:class:`AlwaysActive` without failover).

The pipeline depends on these shapes only, so its tests drive it through small in-memory ports,
and mypy checks at the composition root (bridge/app/bridgeservice.py) that the real nodes fit.
Read-only members are properties: a frozen dataclass field satisfies them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Protocol

from v1.waku.envelope import Envelope
from v2.core.message import WakuMessage

__all__ = ["AlwaysActive", "EnvelopeIn", "Gate", "MessageIn", "PostOutcome", "V1Peer", "V1Port", "V2Port"]


class EnvelopeIn(Protocol):
    """An envelope a v1 peer sent us (:class:`v1.node.ReceivedEnvelope`)."""

    @property
    def envelope(self) -> Envelope: ...
    @property
    def received_at(self) -> float: ...  # the pipeline's clock (wall seconds)


class PostOutcome(Protocol):
    """What posting an envelope to the v1 side did (:class:`v1.node.PostResult`)."""

    @property
    def accepted(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...  # why not: a v1.waku.pool rejection ("duplicate", ...)


class V1Peer(Protocol):
    """A connected v1 peer, as far as the pipeline cares (:class:`v1.node.V1PeerInfo`)."""

    @property
    def pow_requirement(self) -> float: ...


class V1Port(Protocol):
    def inbound(self) -> AsyncIterable[EnvelopeIn]: ...
    async def post(self, envelope: Envelope) -> PostOutcome: ...
    def peers(self) -> Sequence[V1Peer]: ...


class MessageIn(Protocol):
    """A message the v2 node received (:class:`v2.node.ReceivedMessage`)."""

    @property
    def message(self) -> WakuMessage: ...
    @property
    def received_at(self) -> float: ...


class V2Port(Protocol):
    def messages(self) -> AsyncIterable[MessageIn]: ...
    async def publish(self, pubsub_topic: str, msg: WakuMessage) -> object: ...  # raises if not published
    def peers(self) -> Sequence[str]: ...
    def publish_peers(self, pubsub_topic: str) -> Sequence[str]: ...  # whom a publish on the topic reaches now


class Gate(Protocol):
    def is_active(self) -> bool: ...


class AlwaysActive:
    """The gate of a bridge without failover."""

    def is_active(self) -> bool:
        return True
