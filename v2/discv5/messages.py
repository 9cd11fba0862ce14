"""discv5 v5.1 protocol messages (discv5-wire.md "Protocol Messages"; go-ethereum v5wire/msg.go).

``message-pt = message-type ‖ rlp(message-data)``.  Request ids are byte strings of at most 8 bytes
whose bytes are kept exactly (the vectors' ``0x00000001`` has leading zeros).  Topic-discovery
types 0x07..0x0A are not implemented by go-waku or nwaku and decode as an error (then dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import rlp

from v2.discv5.errors import Discv5DecodeError

__all__ = [
    "FindNode",
    "Message",
    "MsgType",
    "Nodes",
    "Ping",
    "Pong",
    "TalkReq",
    "TalkResp",
    "decode_message",
    "encode_message",
]

MAX_REQUEST_ID = 8


class MsgType(IntEnum):
    PING = 0x01
    PONG = 0x02
    FINDNODE = 0x03
    NODES = 0x04
    TALKREQ = 0x05
    TALKRESP = 0x06


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: bytes
    enr_seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: bytes
    enr_seq: int
    ip: bytes  # 4 or 16 raw bytes: the UDP source address the PING came from
    port: int


@dataclass(frozen=True, slots=True)
class FindNode:
    request_id: bytes
    distances: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Nodes:
    request_id: bytes
    total: int
    records: tuple[bytes, ...]  # RLP of each ENR; verified one by one by the receiver


@dataclass(frozen=True, slots=True)
class TalkReq:
    request_id: bytes
    protocol: bytes
    request: bytes


@dataclass(frozen=True, slots=True)
class TalkResp:
    request_id: bytes
    response: bytes


Message = Ping | Pong | FindNode | Nodes | TalkReq | TalkResp

_TYPES: dict[type, MsgType] = {Ping: MsgType.PING, Pong: MsgType.PONG, FindNode: MsgType.FINDNODE,
                               Nodes: MsgType.NODES, TalkReq: MsgType.TALKREQ, TalkResp: MsgType.TALKRESP}


def _uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""


def _nodes_body(rid: bytes, total: int, records: tuple[bytes, ...]) -> bytes:
    # Records are already RLP lists: splice them in instead of decoding and re-encoding each one
    # (the same bytes; the NODES codec was most of a lookup's CPU).  Each must be one whole list.
    for r in records:
        _, kind, length, start = rlp.codec.consume_length_prefix(r, 0)
        if kind is not list or start + length != len(r):
            raise rlp.exceptions.EncodingError("a record is one RLP list", r)
    recs = b"".join(records)
    payload = rlp.encode(rid) + rlp.encode(_uint(total)) + rlp.codec.length_prefix(len(recs), 0xC0) + recs
    return rlp.codec.length_prefix(len(payload), 0xC0) + payload


def encode_message(msg: Message) -> bytes:
    body: list[object]
    if type(msg) is Nodes:
        if len(msg.request_id) > MAX_REQUEST_ID:
            raise ValueError("request id is at most 8 bytes")
        return bytes([MsgType.NODES]) + _nodes_body(msg.request_id, msg.total, msg.records)
    match msg:
        case Ping(rid, seq):
            body = [rid, _uint(seq)]
        case Pong(rid, seq, ip, port):
            body = [rid, _uint(seq), ip, _uint(port)]
        case FindNode(rid, dists):
            body = [rid, [_uint(d) for d in dists]]
        case TalkReq(rid, proto, req):
            body = [rid, proto, req]
        case TalkResp(rid, resp):
            body = [rid, resp]
    if len(msg.request_id) > MAX_REQUEST_ID:
        raise ValueError("request id is at most 8 bytes")
    return bytes([_TYPES[type(msg)]]) + rlp.encode(body)


def _int(item: object, max_bytes: int = 8) -> int:
    if not isinstance(item, bytes) or len(item) > max_bytes or item[:1] == b"\0":
        raise Discv5DecodeError("bad integer")
    return int.from_bytes(item, "big")


def _bytes(item: object) -> bytes:
    if not isinstance(item, bytes):
        raise Discv5DecodeError("expected a byte string")
    return item


def decode_message(pt: bytes) -> Message:
    if not pt:
        raise Discv5DecodeError("empty message")
    try:
        kind = MsgType(pt[0])
    except ValueError:
        raise Discv5DecodeError(f"unknown message type {pt[0]:#x}") from None
    try:
        # decode_raw is what rlp.decode runs; it also returns each item's own encoding (NODES records).
        body, per_item = rlp.codec.decode_raw(pt[1:], True, False)
    except (rlp.exceptions.RLPException, RecursionError) as exc:
        raise Discv5DecodeError(f"bad RLP: {exc}") from None
    # geth decodes with rlp "tail" tolerance for forward compatibility: extra list items are ignored.
    if not isinstance(body, list) or not body:
        raise Discv5DecodeError("message data is a list")
    rid = _bytes(body[0])
    if len(rid) > MAX_REQUEST_ID:
        raise Discv5DecodeError("request id longer than 8 bytes")

    def need(n: int) -> None:
        if len(body) < n:
            raise Discv5DecodeError(f"{kind.name} needs {n} fields")

    if kind == MsgType.PING:
        need(2)
        return Ping(rid, _int(body[1]))
    if kind == MsgType.PONG:
        need(4)
        ip = _bytes(body[2])
        if len(ip) not in (4, 16):
            raise Discv5DecodeError("PONG ip is 4 or 16 bytes")
        return Pong(rid, _int(body[1]), ip, _int(body[3], 2))
    if kind == MsgType.FINDNODE:
        need(2)
        if not isinstance(body[1], list):
            raise Discv5DecodeError("FINDNODE distances are a list")
        return FindNode(rid, tuple(_int(d, 2) for d in body[1]))
    if kind == MsgType.NODES:
        need(3)
        if not isinstance(body[2], list):
            raise Discv5DecodeError("NODES records are a list")
        records = []
        for r, r_rlp in zip(body[2], per_item[3][1:], strict=True):
            if not isinstance(r, list):
                raise Discv5DecodeError("a record is an RLP list")
            records.append(bytes(r_rlp[0]))
        return Nodes(rid, _int(body[1], 1), tuple(records))
    if kind == MsgType.TALKREQ:
        need(3)
        return TalkReq(rid, _bytes(body[1]), _bytes(body[2]))
    need(2)
    return TalkResp(rid, _bytes(body[1]))
