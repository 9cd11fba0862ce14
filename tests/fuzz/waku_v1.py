"""waku/1 harnesses: the packets after the RLPx frame (Status, Messages, Batch Ack, Message Response,
P2P Request Complete, through each decoder and through the per-peer core) and the envelope."""

from __future__ import annotations

import rlp

from tests.fuzz.targets import Target, each, instrumented

with instrumented():
    from v1.errors import V1Error
    from v1.waku.envelope import Envelope
    from v1.waku.messages import (
        MessageResponse,
        WakuCode,
        decode_batch_ack,
        decode_message_response,
        decode_messages,
        decode_p2p_request_complete,
        encode_message_response,
        encode_messages,
    )
    from v1.waku.peer import PeerConfig, WakuPeer
    from v1.waku.status import RateLimits, StatusOptions, encode_status

__all__ = ["TARGETS"]

_NOW = 1_700_000_000.0
_SEP = b"\xff\xfe"


def packets(data: bytes) -> None:
    """Every decoder on the whole input; then the input as a packet sequence (``code ‖ data``
    separated by ff fe) through a fresh :class:`WakuPeer`, whose first packet must be Status."""
    each(V1Error, data, decode_messages, decode_batch_ack, decode_message_response, decode_p2p_request_complete)
    peer = WakuPeer(PeerConfig())
    for i, chunk in enumerate(data.split(_SEP)):
        if chunk:
            peer.receive(chunk[0], chunk[1:], len(chunk), _NOW + i)


def _env(nonce: int = 1) -> Envelope:
    return Envelope(int(_NOW) + 30, 30, b"\x01\x02\x03\x04", b"payload", nonce)


def _packets_seeds() -> list[bytes]:
    status = encode_status(StatusOptions(pow_requirement=0.002, light_node=False, confirmations=True,
                                         rate_limits=RateLimits(10, 10, 10), topic_interest=(b"\x01\x02\x03\x04",)))
    msgs = encode_messages([_env(1), _env(2)])
    resp = encode_message_response(MessageResponse(bytes(32), ()))
    seq = [bytes([WakuCode.STATUS]) + status, bytes([WakuCode.MESSAGES]) + msgs,
           bytes([WakuCode.STATUS_UPDATE]) + status, bytes([WakuCode.MESSAGE_RESPONSE]) + resp]
    return [status, msgs, resp, rlp.encode(bytes(32)), rlp.encode(bytes(100)), rlp.encode(b"ERROR=" + bytes(40)),
            _SEP.join(seq)]


def envelope(data: bytes) -> None:
    env = Envelope.decode(data)
    # What the pool keys on and the size rule reads: they must hold for anything the decoder accepts.
    assert len(env.hash) == 32 and env.size > 0


def _envelope_seeds() -> list[bytes]:
    return [_env().encode(), Envelope(0, 1, bytes(4), bytes.fromhex("deadbeef"), 100000).encode()]


TARGETS = {
    "waku_packets": Target("waku_packets", packets, V1Error, _packets_seeds),
    "waku_envelope": Target("waku_envelope", envelope, V1Error, _envelope_seeds),
}
