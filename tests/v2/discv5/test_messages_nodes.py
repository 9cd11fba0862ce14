"""The NODES codec splices records in and out as bytes: the same wire bytes as the generic RLP path."""

from __future__ import annotations

import random

import pytest
import rlp
from hypothesis import given
from hypothesis import strategies as st

from v2.discv5.errors import Discv5DecodeError
from v2.discv5.messages import MsgType, Nodes, decode_message, encode_message
from v2.enr.enr import Enr, Waku2

RECORDS = [Enr.build(random.Random(i).randbytes(32), i + 1, ip=f"1.2.3.{i}", udp=9000 + i, tcp=60000,
                     waku2=Waku2.RELAY, cluster=1, shards=(0, i)).raw for i in range(6)]


def _generic(msg: Nodes) -> bytes:
    """What encode_message did before the splice: decode every record, encode the whole body."""
    return bytes([MsgType.NODES]) + rlp.encode(
        [msg.request_id, msg.total.to_bytes((msg.total.bit_length() + 7) // 8, "big") if msg.total else b"",
         [rlp.decode(r) for r in msg.records]])


@given(st.binary(max_size=8), st.integers(0, 255), st.lists(st.sampled_from(RECORDS), max_size=6))
def test_nodes_bytes_match_the_generic_encoding(rid: bytes, total: int, records: list[bytes]) -> None:
    msg = Nodes(rid, total, tuple(records))
    data = encode_message(msg)
    assert data == _generic(msg)
    assert decode_message(data) == msg


def test_a_record_that_is_not_one_rlp_list_is_refused() -> None:
    for bad in (b"\x80", RECORDS[0] + b"\x00", RECORDS[0][:-1]):
        with pytest.raises(rlp.exceptions.RLPException):
            encode_message(Nodes(b"r", 1, (bad,)))


def test_decoded_records_are_the_received_bytes() -> None:
    data = _generic(Nodes(b"\x01", 1, tuple(RECORDS[:3])))
    assert decode_message(data).records == tuple(RECORDS[:3])  # type: ignore[union-attr]
    # A record that is a byte string, not a list, is still refused.
    with pytest.raises(Discv5DecodeError):
        decode_message(bytes([MsgType.NODES]) + rlp.encode([b"\x01", b"\x01", [b"x"]]))
