"""Peer exchange wire codec (pure): the only importer of ``peer_exchange_pb2``.

waku-v2.md §11: requests are ``PeerExchangeRPC{query{num_peers}}``; responses carry
``response{peer_infos, status_code, status_desc}`` **and** ``query`` (nwaku's decoder requires
field 1 even in a response), and write status 200 explicitly (nwaku infers
SERVICE_UNAVAILABLE from an absent status with no peers).  ENRs travel as RLP bytes; this codec
does not decode them (the client verifies each one and drops bad ones individually).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from v2.codec import optional, parse, set_present
from v2.errors import V2DecodeError
from v2.peer_exchange import peer_exchange_pb2 as pb

__all__ = [
    "MAX_RPC_SIZE",
    "PxCodecError",
    "PxRequest",
    "PxResponse",
    "PxStatus",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

# nwaku DefaultMaxRpcSize = 10 * 150 KiB + 64 KiB (waku-v2.md §2)
MAX_RPC_SIZE = 10 * 150 * 1024 + 64 * 1024


class PxStatus(IntEnum):
    """nwaku's PeerExchangeResponseStatusCode (599 is client-side only)."""

    UNKNOWN = 0
    SUCCESS = 200
    BAD_REQUEST = 400
    BAD_RESPONSE = 401
    TOO_MANY_REQUESTS = 429
    SERVICE_UNAVAILABLE = 503
    DIAL_FAILURE = 599


class PxCodecError(V2DecodeError):
    pass


@dataclass(frozen=True, slots=True)
class PxRequest:
    num_peers: int


@dataclass(frozen=True, slots=True)
class PxResponse:
    status: int
    status_desc: str | None
    enrs: tuple[bytes, ...]  # RLP-encoded records, unverified


def _parse(data: bytes) -> pb.PeerExchangeRPC:
    return parse(pb.PeerExchangeRPC(), data, PxCodecError)


def encode_request(num_peers: int) -> bytes:
    rpc = pb.PeerExchangeRPC()
    rpc.query.num_peers = num_peers
    return rpc.SerializeToString()


def decode_request(data: bytes) -> PxRequest:
    rpc = _parse(data)
    if not rpc.HasField("query"):
        raise PxCodecError("request without query")
    return PxRequest(rpc.query.num_peers)  # absent num_peers reads as 0, which the service refuses


def encode_response(enrs: Sequence[bytes], status: int = PxStatus.SUCCESS, status_desc: str | None = None,
                    *, num_peers: int = 0) -> bytes:
    rpc = pb.PeerExchangeRPC()
    rpc.query.num_peers = num_peers  # written even though it means nothing here (nwaku requires it)
    for raw in enrs:
        rpc.response.peer_infos.add().enr = raw
    rpc.response.status_code = int(status)
    set_present(rpc.response, status_desc=status_desc)
    return rpc.SerializeToString()


def decode_response(data: bytes) -> PxResponse:
    rpc = _parse(data)
    if not rpc.HasField("response"):
        raise PxCodecError("no response field")
    r = rpc.response
    enrs = tuple(p.enr for p in r.peer_infos if p.HasField("enr"))
    # Without a status, nwaku infers one from the presence of peers (peers predating the extension).
    inferred = PxStatus.SUCCESS if enrs else PxStatus.SERVICE_UNAVAILABLE
    status = r.status_code if r.HasField("status_code") else inferred
    return PxResponse(int(status), optional(r, "status_desc"), enrs)
