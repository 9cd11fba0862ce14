"""Metadata: the wire layout nwaku/js-waku/go-waku read, lenient decoding, the service over real hosts."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.helpers.metrics import metric_value
from tests.helpers.v2host import start_host
from v2.metadata.client import query_metadata
from v2.metadata.metrics import MetadataMetrics
from v2.metadata.protocol import MetadataService
from v2.metadata.rpc import Verdict, judge
from v2.metadata.rpc_codec import Metadata, MetadataDecodeError, decode_metadata, encode_metadata
from v2.protocol_ids import METADATA
from v2.stream import Stream, StreamClosedError, encode_uvarint


def test_encoding_is_nwakus_layout() -> None:
    # waku-v2.md §12 [computed]: cluster 0, shards [0,1,7]; field 2 unpacked, then field 3 packed
    assert encode_metadata(Metadata(0, (0, 1, 7))).hex() == "08001000100110071a03000107"
    assert encode_metadata(Metadata(0, ())).hex() == "0800"  # cluster id written even when 0
    assert encode_metadata(Metadata(1, ())).hex() == "0801"


@pytest.mark.parametrize(("wire", "expected"), [
    ("08001000100110071a03000107", Metadata(0, (0, 1, 7))),  # nwaku: both fields
    ("08011a03000107", Metadata(1, (0, 1, 7))),  # go-waku: field 3 packed only
    ("0801120100", Metadata(1, (0,))),  # field 2 packed, one shard
    ("08011203000107", Metadata(1, (0, 1, 7))),  # field 2 packed
    ("0801100010011007", Metadata(1, (0, 1, 7))),  # js-waku: field 2 unpacked
    ("0801", Metadata(1, ())),  # js-waku light node: shards []
    ("", Metadata(None, ())),  # no cluster id at all
    ("080110051a0102", Metadata(1, (2,))),  # field 3 wins over field 2 (nwaku's order)
])
def test_decoding_accepts_every_layout(wire: str, expected: Metadata) -> None:
    assert decode_metadata(bytes.fromhex(wire)) == expected


@given(st.integers(0, 0xFFFF), st.lists(st.integers(0, 1023), max_size=100))
def test_round_trip(cluster: int, shards: list[int]) -> None:
    assert decode_metadata(encode_metadata(Metadata(cluster, tuple(shards)))) == Metadata(cluster, tuple(shards))


@given(st.binary(max_size=1100))
def test_decoder_never_raises_anything_else(data: bytes) -> None:
    try:
        md = decode_metadata(data)
    except MetadataDecodeError:
        return
    assert md.cluster_id is None or 0 <= md.cluster_id <= 0xFFFF


def test_oversize_is_refused() -> None:
    with pytest.raises(MetadataDecodeError):
        decode_metadata(b"\x08\x00" + b"\x10\x01" * 600)
    with pytest.raises(ValueError, match="1024"):
        encode_metadata(Metadata(0, tuple(range(1000, 1023)) * 20))


def test_verdict() -> None:
    assert judge(0, Metadata(0, ())) is Verdict.KEEP  # js-waku answers shards: [] and is kept
    assert judge(1, Metadata(1, (0, 1))) is Verdict.KEEP
    assert judge(0, Metadata(1, (0,))) is Verdict.CLUSTER_MISMATCH
    assert judge(0, Metadata(None, ())) is Verdict.NO_CLUSTER
    assert judge(0, None) is Verdict.QUERY_FAILED


async def test_service_answers_and_client_reads(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    svc = MetadataService(3, (0, 5), reg)
    server = await start_host(nursery, ws=True, services=[svc])
    client = await start_host(nursery, ws=True)
    await client.connect(server.listen_addrs[0])
    cm = MetadataMetrics(CollectorRegistry())
    got = await query_metadata(client, server.peer_id, Metadata(3, ()), metrics=cm)
    assert got == Metadata(3, (0, 5))
    assert reg.get_sample_value("waku_metadata_requests_total", {"type": "served"}) == 1
    # a peer without the protocol: counted, None
    assert await query_metadata(server, client.peer_id, Metadata(3, ()), metrics=cm) is None
    assert metric_value(cm.errors, "query_dial") == 1


async def _no_answer(s: Stream) -> bool:
    try:
        return await s.read_lp(1024, timeout=5) is None
    except StreamClosedError:  # reset
        return True


async def test_service_survives_bad_requests(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    svc = MetadataService(0, (0,), reg, idle_timeout=0.5)
    server = await start_host(nursery, ws=True, services=[svc])
    client = await start_host(nursery, ws=True)
    await client.connect(server.listen_addrs[0])
    s = await client.new_stream(server.peer_id, [METADATA])
    await s.write_lp(b"\xff\xff\xff")  # not a protobuf
    assert await _no_answer(s)
    s = await client.new_stream(server.peer_id, [METADATA])
    await s.close_write()  # js-waku's pre-opened stream, closed unused: no error
    assert await s.read_lp(1024, timeout=5) is None
    idle = await client.new_stream(server.peer_id, [METADATA])  # opened and left silent
    s = await client.new_stream(server.peer_id, [METADATA])
    await s._write(encode_uvarint(5000) + b"\x08\x00")  # announces more than the 1024 bytes peers read
    assert await _no_answer(s)
    with trio.fail_after(5):
        while reg.get_sample_value("waku_metadata_errors_total", {"type": "timeout"}) is None:
            await trio.sleep(0.05)
    await idle.aclose()
    assert reg.get_sample_value("waku_metadata_errors_total", {"type": "decode"}) == 1
    assert reg.get_sample_value("waku_metadata_errors_total", {"type": "too_large"}) == 1
    assert await query_metadata(client, server.peer_id, Metadata(0, ())) == Metadata(0, (0,))  # still serving
