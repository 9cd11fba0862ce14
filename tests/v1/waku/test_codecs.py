"""Status options, Messages packets, pool, rate limiter: pure cores."""

from __future__ import annotations

from typing import Any

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import nested_rlp_lists
from v1.errors import V1Error
from v1.waku.bloom import FULL_BLOOM, topic_to_bloom
from v1.waku.envelope import Envelope, EnvelopeError
from v1.waku.messages import (
    MessagesError,
    decode_batch_ack,
    decode_message_response,
    decode_messages,
    decode_p2p_request_complete,
    encode_messages,
)
from v1.waku.pool import EnvelopePool, PeerFilter, Rejection, validate
from v1.waku.ratelimit import PeerRateLimiter
from v1.waku.status import RateLimits, StatusError, StatusOptions, apply_update, decode_status, encode_status

FUZZ = settings(max_examples=300, deadline=None)


def test_nwaku_bridge_status_bytes() -> None:
    """waku-v1.md §3.3: the nwaku bridge's Status (pow 0.002, full bloom, false, false)."""
    o = StatusOptions(pow_requirement=0.002, bloom=FULL_BLOOM, light_node=False, confirmations=False)
    assert encode_status(o).hex() == "f856ca80883f60624dd2f1a9fcf84301b840" + "ff" * 64 + "c20280c20380"
    assert decode_status(encode_status(o)) == o


def test_status_update_examples() -> None:
    ti = decode_status(bytes.fromhex("cdcc05ca841a2b3c4d8400000000"))
    assert ti.topic_interest == (bytes.fromhex("1a2b3c4d"), b"\0\0\0\0")
    assert decode_status(bytes.fromhex("c6c504c30a0501")).rate_limits == RateLimits(10, 5, 1)


def test_unknown_keys_ignored_and_update_semantics() -> None:
    data = rlp.encode([[0, 0x4000666666666666], [99, 10]])  # pow 2.05 + an unknown key
    o = decode_status(data)
    assert o.pow_requirement == 2.05
    merged = apply_update(StatusOptions(bloom=FULL_BLOOM), StatusOptions(topic_interest=(b"abcd",)))
    assert merged.bloom is None and merged.topic_interest == (b"abcd",)


def test_messages_packet_keeps_good_envelopes_next_to_bad() -> None:
    good = Envelope(100, 10, b"abcd", b"x", 1)
    packet = rlp.encode([good.encode_item(), [1, 2], [b"\x00\x01", 1, b"abcd", b"", 0]])
    out = decode_messages(packet)
    assert out[0] == good and isinstance(out[1], EnvelopeError) and isinstance(out[2], EnvelopeError)
    assert decode_messages(encode_messages([good, good])) == [good, good]


def test_validate_rules() -> None:
    now = 1000.0
    env = Envelope(1010, 10, b"abcd", b"x", 0)
    kw: dict[str, Any] = {"pow_requirement": 0.0, "max_size": 1 << 20, "future_allowance": 2.0}
    assert validate(env, now, **kw) is None
    assert validate(Envelope(999, 10, b"abcd", b"x"), now, **kw) is Rejection.EXPIRED
    assert validate(Envelope(1013, 10, b"abcd", b"x"), now, **kw) is Rejection.FUTURE
    assert validate(Envelope(1010, 0, b"abcd", b"x"), now, **kw) is Rejection.TTL_ZERO
    assert validate(env, now, **{**kw, "max_size": 5}) is Rejection.TOO_LARGE
    assert validate(env, now, **{**kw, "pow_requirement": 1e6}) is Rejection.LOW_POW
    assert validate(env, now, **kw, topic_interest=frozenset({b"zzzz"})) is Rejection.TOPIC
    assert validate(env, now, **kw, bloom=topic_to_bloom(b"zzzz")) is Rejection.BLOOM


def test_pool_forwarding_known_sets_and_capacity() -> None:
    pool = EnvelopePool(capacity=2)
    a, b, c = (Envelope(2000, 10, b"abcd", bytes([i]), 0) for i in range(3))
    pool.add_peer("p1")
    pool.add_peer("p2")
    assert pool.add(a, 1000, origin="p1").new
    assert not pool.add(a, 1000, origin="p2").new  # duplicate
    assert pool.pending_for("p1", PeerFilter(pow_requirement=0), 1000) == []  # it came from p1
    assert pool.pending_for("p2", PeerFilter(pow_requirement=0), 1000) == []  # p2 sent it too
    assert pool.add(b, 1000).new
    assert pool.pending_for("p1", PeerFilter(pow_requirement=0), 1000) == [b]
    assert pool.pending_for("p1", PeerFilter(pow_requirement=0), 1000) == []  # once
    r = pool.add(c, 1000)  # full: evicts the lowest PoW or refuses
    assert r.new or r.rejection is Rejection.FULL_NEW
    assert pool.expire(3000) == len(pool) == 0 or len(pool) == 0


def test_rate_limiter() -> None:
    lim = PeerRateLimiter.create(packets_per_s=5, bytes_per_s=0, tolerance=3)
    results = [lim.check(10, 100.0) for _ in range(10)]
    assert results[:5] == [None] * 5 and results[5] == "packets"
    assert lim.abusive
    assert lim.check(10, 102.0) is None  # refilled


def test_rate_limiter_does_not_count_the_answers_we_are_owed() -> None:
    """A status-go peer with confirmations answers each of our Messages packets with two packets
    (waku/v1/peer.go sendConfirmation) whatever limits we advertise: owed answers are free, and
    only owed ones (a peer flooding answers is counted as usual)."""
    from v1.waku.ratelimit import MAX_OWED_ANSWERS

    lim = PeerRateLimiter.create(packets_per_s=4, bytes_per_s=0, tolerance=5)
    for _ in range(30):
        lim.expect_answers(2)
        assert lim.check(40, 100.0, answer=True) is None
        assert lim.check(40, 100.0, answer=True) is None
    assert lim.exceeded == 0
    assert [lim.check(10, 100.0) for _ in range(4)] == [None] * 4  # its budget is intact
    assert lim.check(40, 100.0, answer=True) == "packets"  # an answer nobody asked for counts
    lim2 = PeerRateLimiter.create(packets_per_s=1, bytes_per_s=0)
    for _ in range(100):
        lim2.expect_answers(2)
    free = sum(lim2.check(1, 300.0, answer=True) is None for _ in range(MAX_OWED_ANSWERS + 10))
    assert free == MAX_OWED_ANSWERS + 1  # the capped credit, then the one token of its bucket


def test_rate_limiter_always_lets_one_full_packet_through() -> None:
    # 100 kB/s: a legitimate 1 MiB Messages packet passes once the bucket has refilled, never "abuse"
    lim = PeerRateLimiter.create(packets_per_s=0, bytes_per_s=100_000)
    assert lim.check(1 << 20, 100.0) is None
    assert lim.check(1 << 20, 100.5) == "bytes"  # the average rate still holds
    assert lim.check(1 << 20, 112.0) is None
    assert not lim.abusive


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_envelope_and_status_decoders(data: bytes) -> None:
    for fn in (Envelope.decode, decode_status, decode_messages):
        try:
            fn(data)
        except V1Error:
            pass


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(min_size=4, max_size=4),
       st.binary(max_size=300), st.integers(0, 2**64 - 1))
def test_fuzz_envelope_roundtrip(expiry: int, ttl: int, topic: bytes, data: bytes, nonce: int) -> None:
    env = Envelope(expiry, ttl, topic, data, nonce)
    assert Envelope.decode(env.encode()) == env


def test_p2p_request_complete_is_status_go_concatenation() -> None:
    """status-go's payload is an RLP string of request_id ‖ last_envelope_hash ‖ cursor, not a list
    (waku/mailserver.go CreateMailServerRequestCompletedPayload); captured from v1.1.0."""
    from v1.waku.messages import P2PRequestComplete, decode_p2p_request_complete

    rid, last, cursor = b"\x04" * 32, b"\x05" * 32, b"\x06" * 36
    assert decode_p2p_request_complete(rlp.encode(rid + last + cursor)) == P2PRequestComplete(rid, last, cursor)
    assert decode_p2p_request_complete(rlp.encode(rid + last)) == P2PRequestComplete(rid, last)
    assert decode_p2p_request_complete(rlp.encode(rid)) == P2PRequestComplete(rid)
    # a remainder shorter than a cursor is ignored, as status-go does
    assert decode_p2p_request_complete(rlp.encode(rid + last + b"ab")) == P2PRequestComplete(rid, last)
    failed = decode_p2p_request_complete(rlp.encode(b"ERROR=" + rid + b"db closed"))
    assert failed == P2PRequestComplete(rid, error="db closed")


def test_message_response_batch_ack_and_p2p_complete() -> None:
    from v1.waku.messages import (
        EnvelopeErrorEntry,
        MessageResponse,
        decode_batch_ack,
        decode_message_response,
        decode_p2p_request_complete,
        encode_message_response,
    )

    resp = MessageResponse(b"\x01" * 32, (EnvelopeErrorEntry(b"\x02" * 32, 21, "time sync"),))
    assert decode_message_response(encode_message_response(resp)) == resp
    assert decode_batch_ack(rlp.encode(b"\x03" * 32)) == b"\x03" * 32
    for bad in (b"\xc0", rlp.encode([1, 2]), b"\xff", rlp.encode(b"\x01" * 31), rlp.encode(b"\x01" * 101)):
        for fn in (decode_batch_ack, decode_message_response, decode_p2p_request_complete):
            try:
                fn(bad)
            except V1Error:
                pass


def test_deeply_nested_rlp_is_a_decode_error_not_a_recursion_error() -> None:
    """Fuzzing finding (docs/reliability.md): ~3 KB of nested lists raised RecursionError."""
    data = nested_rlp_lists(1100)
    assert len(data) < 4096
    for decode, error in ((decode_messages, MessagesError), (decode_batch_ack, MessagesError),
                          (decode_message_response, MessagesError), (decode_p2p_request_complete, MessagesError),
                          (decode_status, StatusError), (Envelope.decode, EnvelopeError)):
        with pytest.raises(error):
            decode(data)
