"""waku/1 packet codes and the Messages packet codec (waku-v1.md §1)."""

from __future__ import annotations

from enum import IntEnum

import rlp

from v1.errors import V1Error
from v1.waku.envelope import Envelope, EnvelopeError, decode_envelope_item

__all__ = ["WAKU_CAPABILITY_LENGTH", "MessagesError", "WakuCode", "decode_messages", "encode_messages"]

WAKU_CAPABILITY_LENGTH = 128  # status-go NumberOfMessageCodes


class WakuCode(IntEnum):
    STATUS = 0
    MESSAGES = 1
    BATCH_ACK = 11
    MESSAGE_RESPONSE = 12
    STATUS_UPDATE = 22
    P2P_REQUEST_COMPLETE = 125
    P2P_REQUEST = 126
    P2P_MESSAGE = 127


class MessagesError(V1Error):
    pass


def encode_messages(envelopes: list[Envelope]) -> bytes:
    return rlp.encode([e.encode_item() for e in envelopes])


def decode_messages(data: bytes) -> list[Envelope | EnvelopeError]:
    """Each envelope decoded separately: one bad envelope does not spoil its packet-mates."""
    try:
        items = rlp.decode(data)
    except rlp.exceptions.DecodingError as exc:
        raise MessagesError(f"malformed Messages packet: {exc}") from None
    if not isinstance(items, list):
        raise MessagesError("Messages packet is not a list")
    out: list[Envelope | EnvelopeError] = []
    for item in items:
        try:
            out.append(decode_envelope_item(item))
        except EnvelopeError as exc:
            out.append(exc)
    return out
