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
    "P2PRequestComplete",
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
    # RecursionError: pyrlp decodes nested lists recursively; ~1 000 levels (2-3 KB) exhaust the stack.
    try:
        items = rlp.decode(data)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
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
    # The spec says 1 = time sync.  status-go declares 21 (time not synced) and 22 (other), but
    # sends 21 for *every* error: `type TimeSyncError error` is an interface, so the type switch
    # in ErrorToEnvelopeError matches any error (waku/common/errors.go, envelope.go).  Accept any.
    code: int
    description: str


@dataclass(frozen=True, slots=True)
class MessageResponse:
    batch_hash: bytes
    errors: tuple[EnvelopeErrorEntry, ...]


def decode_batch_ack(data: bytes) -> bytes:
    """Batch Ack (11): status-go sends the bare 32-byte batch hash as an RLP string."""
    try:
        item = rlp.decode(data)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
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
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
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


@dataclass(frozen=True, slots=True)
class P2PRequestComplete:
    """A mail server's P2P Request Complete (125).  ``error`` is set for a failed request."""

    request_id: bytes
    last_envelope_hash: bytes = b""  # empty when the server sent only the request id
    cursor: bytes = b""  # 36 bytes (4 timestamp + 32 hash) when more pages follow
    error: str | None = None


_FAILED_PREFIX = b"ERROR="  # status-go waku/mailserver.go mailServerFailedPayloadPrefix
_CURSOR_LEN = 36


def decode_p2p_request_complete(data: bytes) -> P2PRequestComplete:
    """P2P Request Complete (125): one RLP string holding the *concatenation*
    ``request_id(32) ‖ last_envelope_hash(32) ‖ cursor(36)`` (shorter forms: the id alone, or id and
    hash), or ``"ERROR=" ‖ request_id ‖ message`` for a failed request.  status-go builds it with
    CreateMailServerRequestCompletedPayload and parses it by slicing (waku/mailserver.go
    tryCreateMailServerRequestCompletedEvent); it is not an RLP list."""
    try:
        payload = rlp.decode(data)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        raise MessagesError(f"malformed P2P Request Complete: {exc}") from None
    if not isinstance(payload, bytes):
        raise MessagesError("P2P Request Complete is not an RLP string")
    if payload.startswith(_FAILED_PREFIX) and len(payload) >= len(_FAILED_PREFIX) + 32:
        rest = payload[len(_FAILED_PREFIX):]
        return P2PRequestComplete(rest[:32], error=rest[32:].decode("utf-8", "replace"))
    if len(payload) < 32 or len(payload) > 64 + _CURSOR_LEN:
        raise MessagesError(f"P2P Request Complete payload of {len(payload)} bytes")
    last = payload[32:64] if len(payload) >= 64 else b""
    # status-go keeps a remainder as the cursor only if it has a cursor's full length.
    cursor = payload[64:] if len(payload) - 64 >= _CURSOR_LEN else b""
    return P2PRequestComplete(payload[:32], last, cursor)
