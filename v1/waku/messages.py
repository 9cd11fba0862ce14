"""waku/1 packet codes and the Messages packet codec (waku-v1.md §1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import rlp

from v1.errors import V1DecodeError
from v1.waku.envelope import Envelope, EnvelopeError, decode_envelope_item

__all__ = [
    "WAKU_CAPABILITY_LENGTH",
    "EnvelopeErrorEntry",
    "MessageResponse",
    "MessagesError",
    "WakuCode",
    "decode_batch_ack",
    "decode_message_response",
    "decode_messages",
    "decode_p2p_request_complete",
    "encode_message_response",
    "encode_messages",
]

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


class MessagesError(V1DecodeError):
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


@dataclass(frozen=True, slots=True)
class EnvelopeErrorEntry:
    envelope_hash: bytes
    code: int  # spec says 1 = time sync; status-go emits 21 / 22 (waku-v1.md §11): accept any
    description: str


@dataclass(frozen=True, slots=True)
class MessageResponse:
    batch_hash: bytes
    errors: tuple[EnvelopeErrorEntry, ...]


def decode_batch_ack(data: bytes) -> bytes:
    """Batch Ack (11): status-go sends the bare 32-byte batch hash as an RLP string."""
    try:
        item = rlp.decode(data)
    except rlp.exceptions.DecodingError as exc:
        raise MessagesError(f"malformed Batch Ack: {exc}") from None
    if isinstance(item, list) and len(item) == 2 and isinstance(item[1], list) and item[1]:
        item = item[1][0]  # the spec's [version, [hash, errors]] form
    if not isinstance(item, bytes) or len(item) != 32:
        raise MessagesError("Batch Ack is not a 32-byte hash")
    return item


def encode_message_response(resp: MessageResponse) -> bytes:
    return rlp.encode([1, [resp.batch_hash, [[e.envelope_hash, e.code, e.description.encode()]
                                             for e in resp.errors]]])


def decode_message_response(data: bytes) -> MessageResponse:
    """Message Response (12): ``[1, [batch_hash, [[envelope_hash, code, description], ...]]]``."""
    try:
        item = rlp.decode(data)
    except rlp.exceptions.DecodingError as exc:
        raise MessagesError(f"malformed Message Response: {exc}") from None
    try:
        _version, (batch, errors) = item
        entries = tuple(
            EnvelopeErrorEntry(h, int.from_bytes(c, "big"), d.decode("utf-8", "replace"))
            for h, c, d in errors
        )
    except (TypeError, ValueError, AttributeError):
        raise MessagesError("Message Response has the wrong shape") from None
    if not isinstance(batch, bytes) or len(batch) != 32:
        raise MessagesError("Message Response batch hash is not 32 bytes")
    return MessageResponse(batch, entries)


def decode_p2p_request_complete(data: bytes) -> tuple[bytes, bytes, bytes]:
    """P2P Request Complete (125): status-go wraps ``[request_id, last_envelope_hash, cursor]``."""
    try:
        item = rlp.decode(data)
        if isinstance(item, bytes):
            item = rlp.decode(item)
    except rlp.exceptions.DecodingError as exc:
        raise MessagesError(f"malformed P2P Request Complete: {exc}") from None
    if not isinstance(item, list) or len(item) < 3 or not all(isinstance(x, bytes) for x in item[:3]):
        raise MessagesError("P2P Request Complete has the wrong shape")
    return item[0], item[1], item[2]
