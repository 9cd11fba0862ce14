"""The v1 -> v2 outbox core (bridge/outbox.py): held in order, released per topic, expired, bounded."""

from __future__ import annotations

import pytest

from bridge.outbox import Outbox
from bridge.translate import V1ToV2
from v2.core.message import WakuMessage


def item(n: int, topic: str = "/waku/2/rs/0/0") -> V1ToV2:
    return V1ToV2(topic, WakuMessage(f"m{n}".encode(), "/waku/1/0x1a2b3c4d/rfc26", version=1), n.to_bytes(32, "big"))


def test_released_oldest_first_once_the_topic_has_a_peer() -> None:
    box = Outbox()
    for n in range(3):
        box.hold(item(n), expires=100.0, sent_at=float(n), received_at=None)
    box.hold(item(9, "/waku/2/rs/0/1"), expires=100.0, sent_at=0.0, received_at=None)
    assert box.take(set(), 10.0) == ([], 0)  # nobody to go to: everything stays
    ready, expired = box.take({"/waku/2/rs/0/0"}, 10.0)
    assert [h.item.key[-1] for h in ready] == [0, 1, 2] and expired == 0
    assert len(box) == 1 and box.topics() == {"/waku/2/rs/0/1"}


def test_expired_items_are_dropped_not_published() -> None:
    box = Outbox()
    box.hold(item(1), expires=10.0, sent_at=0.0, received_at=None)
    box.hold(item(2), expires=20.0, sent_at=0.0, received_at=5.0)
    assert box.take(set(), 10.0) == ([], 1)
    ready, expired = box.take({"/waku/2/rs/0/0"}, 15.0)
    assert [(h.item.key[-1], h.received_at) for h in ready] == [(2, 5.0)] and expired == 0
    assert not box


def test_bounded_and_drained() -> None:
    box = Outbox(capacity=2)
    assert [box.hold(item(n), expires=100.0, sent_at=0.0, received_at=None) for n in range(3)] == [0, 0, 1]
    assert [h.item.key[-1] for h in box.drain()] == [1, 2]  # the oldest went
    assert not box
    with pytest.raises(ValueError):
        Outbox(capacity=0)
