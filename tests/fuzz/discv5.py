"""discv5 (33/WAKU2-DISCV5 ``d5waku``, discv5 v5.1 wire) harness: packet, authdata and message decoders.

The header is AES-CTR masked with the recipient's id and the message AES-GCM sealed, so besides the
raw packet (mode 0) the fuzz bytes are also taken as the *unmasked* packet (mode 1, masked here)
and as a message plaintext a peer really sealed (mode 3); mode 2 is the bare message decoder.
"""

from __future__ import annotations

from Crypto.Cipher import AES

from tests.fuzz.targets import Target, hex_strings, instrumented
from tests.helpers.vectors import load_vectors

with instrumented():
    from v2.discv5.messages import FindNode, Nodes, Ping, Pong, TalkReq, TalkResp, decode_message, encode_message
    from v2.discv5.packet import (
        MAX_PACKET_SIZE,
        WAKU_PROTOCOL_ID,
        Flag,
        decode_handshake_auth,
        decode_packet,
        decode_whoareyou_auth,
        encode_ordinary,
        open_message,
    )
    from v2.errors import V2Error

__all__ = ["TARGETS"]

_PING = load_vectors("discv5_wire.json")["packets"]["ping_message_packet"]
LOCAL_ID = bytes.fromhex(_PING["dest-node-id"].removeprefix("0x"))
SRC_ID = bytes.fromhex(_PING["src-node-id"].removeprefix("0x"))
KEY = bytes(16)  # the vectors' read-key
_STATIC = 23  # protocol-id(6) version(2) flag(1) nonce(12) authdata-size(2)
_MAX_PLAINTEXT = MAX_PACKET_SIZE - 16 - _STATIC - 32 - 16  # masking-iv, static header, src-id, GCM tag


def _mask(packet: bytes) -> bytes:
    """Mask header and authdata (their announced size, clipped) as the sender does."""
    iv, rest = packet[:16], packet[16:]
    size = int.from_bytes(rest[21:23], "big") if len(rest) >= _STATIC else 0
    end = min(len(rest), _STATIC + size)
    masked = AES.new(LOCAL_ID[:16], AES.MODE_CTR, nonce=b"", initial_value=iv.ljust(16, b"\0")).encrypt(rest[:end])
    return iv + masked + rest[end:]


def packet(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    protocol_id = b"discv5" if data[0] & 4 else WAKU_PROTOCOL_ID
    if mode == 2:
        decode_message(rest)
        return
    if mode == 3:
        plaintext = rest[:_MAX_PLAINTEXT]  # what fits a packet: the sender refuses more
        sealed = encode_ordinary(LOCAL_ID, SRC_ID, bytes(12), bytes(16), KEY, plaintext, protocol_id=protocol_id)
        decode_message(open_message(decode_packet(sealed, LOCAL_ID, protocol_id=protocol_id), KEY))
        return
    p = decode_packet(_mask(rest) if mode == 1 else rest, LOCAL_ID, protocol_id=protocol_id)
    if p.header.flag == Flag.WHOAREYOU:
        decode_whoareyou_auth(p.header.authdata)
    elif p.header.flag == Flag.HANDSHAKE:
        decode_handshake_auth(p.header.authdata)
    open_message(p, KEY)


def _seeds() -> list[bytes]:
    raw = hex_strings("discv5_wire.json", "packet")
    unmasked = [b"\x05" + bytes(16) + h for h in hex_strings("discv5_wire.json", "unmasked-header")]
    msgs = [encode_message(m) for m in (Ping(b"\x01", 2), Pong(b"\x01", 2, bytes([127, 0, 0, 1]), 9000),
                                        FindNode(b"\x02", (256, 255)), Nodes(b"\x03", 1, ()),
                                        TalkReq(b"\x04", b"p", b"q"), TalkResp(b"\x04", b"r"))]
    return [b"\x04" + r for r in raw] + unmasked + [b"\x02" + m for m in msgs] + [b"\x03" + m for m in msgs]


TARGETS = {"discv5": Target("discv5", packet, V2Error, _seeds, max_len=1280)}
