"""The waku/1 peer core (v1/waku/peer.py) on plain calls with an explicit ``now``: no trio, no
sockets.  V1Node runs it against real peers in tests/v1/test_node.py and the interop tests."""

from __future__ import annotations

import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from v1.rlpx.base import DisconnectReason
from v1.waku.bloom import FULL_BLOOM, bloom_matches, bloom_or, topic_to_bloom
from v1.waku.envelope import Envelope
from v1.waku.messages import (
    EnvelopeErrorEntry,
    MessageResponse,
    WakuCode,
    decode_messages,
    encode_message_response,
    encode_messages,
)
from v1.waku.peer import (
    Disconnect,
    EnvelopesDropped,
    EnvelopesRefused,
    MessagesIn,
    Outgoing,
    PacketIn,
    PeerConfig,
    PeerState,
    RateLimited,
    Ready,
    Received,
    StatusUpdated,
    WakuPeer,
    advertised_interest,
    merge_filter,
    tightest_limit,
)
from v1.waku.pool import Rejection
from v1.waku.pow import SizeRule, mine_smallest_nonce, pow_value
from v1.waku.status import MAX_TOPIC_INTEREST, RateLimits, StatusOptions, decode_status, encode_status

NOW = 1_700_000_000.0
TOPIC = b"\x1a\x2b\x3c\x4d"
EVENTS = (Ready, Disconnect, RateLimited, PacketIn, MessagesIn, EnvelopesDropped, StatusUpdated, EnvelopesRefused)


def envelope(data: bytes, *, pow_target: float = 0.002, sent: float = NOW, ttl: int = 10) -> Envelope:
    expiry = int(sent) + ttl
    return Envelope(expiry, ttl, TOPIC, data, mine_smallest_nonce(expiry, ttl, TOPIC, data, pow_target) or 0)


def low_pow(data: bytes, below: float) -> Envelope:
    """An envelope whose PoW is under ``below`` (``data`` long enough for that; the first such nonce)."""
    e = envelope(data, pow_target=0)
    candidates = (Envelope(e.expiry, e.ttl, e.topic, e.data, n) for n in range(1000))
    return next(c for c in candidates if pow_value(c, SizeRule.SPEC) < below)


def ready(config: PeerConfig | None = None, **status: object) -> WakuPeer:
    p = WakuPeer(config or PeerConfig())
    (ev,) = p.receive(WakuCode.STATUS, encode_status(StatusOptions(**status)), 64, NOW)  # type: ignore[arg-type]
    assert isinstance(ev, Ready) and p.state is PeerState.READY
    return p


def test_the_first_packet_must_be_a_status() -> None:
    p = WakuPeer(PeerConfig())
    assert p.receive(WakuCode.MESSAGES, encode_messages([]), 8, NOW) == [
        Disconnect(DisconnectReason.BREACH_OF_PROTOCOL, "no_status")]
    assert p.state is PeerState.CLOSED and p.receive(WakuCode.STATUS, encode_status(StatusOptions()), 8, NOW) == []
    bad = WakuPeer(PeerConfig())
    (ev,) = bad.receive(WakuCode.STATUS, b"\x05", 1, NOW)
    assert isinstance(ev, Disconnect) and (ev.reason, ev.cause) == (DisconnectReason.BREACH_OF_PROTOCOL, "bad_status")
    assert ev.detail  # says what did not decode
    assert WakuPeer(PeerConfig()).status_timeout() == Disconnect(DisconnectReason.SUBPROTOCOL_ERROR, "status_timeout")


def test_status_sets_what_the_peer_wants_and_the_pace() -> None:
    p = ready(pow_requirement=0.5, confirmations=True, rate_limits=RateLimits(100, 40, 0),
              bytes_rate_limits=RateLimits(0, 10_000, 5))
    assert p.filter.pow_requirement == 0.5 and p.filter.bloom == FULL_BLOOM and not p.filter.light
    assert p.confirmations
    assert p.pacer.packets_per_s > 0 and p.pacer.bytes_per_s > 0  # paced under 40 packets/s, 10 kB/s
    assert p.pacer.packets_per_s < 40 and p.pacer.bytes_per_s < 10_000
    plain = ready()  # absent keys: status-go's defaults (pow 0.001, full bloom), nothing to pace to
    assert plain.filter.pow_requirement == 0.001 and plain.pacer.packets_per_s == 0 and not plain.confirmations


def test_two_light_nodes_are_useless_to_each_other() -> None:
    p = WakuPeer(PeerConfig(light_node=True))
    assert p.receive(WakuCode.STATUS, encode_status(StatusOptions(light_node=True)), 8, NOW) == [
        Disconnect(DisconnectReason.USELESS_PEER, "both_light")]
    ready(PeerConfig(light_node=True), light_node=False)
    ready(PeerConfig(light_node=False), light_node=True)


def test_messages_are_validated_in_order() -> None:
    p = ready(PeerConfig(pow_requirement=0.002, future_allowance=10))
    good, low = envelope(b"good"), low_pow(b"low pow" * 200, 0.002)
    old, future = envelope(b"old", sent=NOW - 60), envelope(b"future", sent=NOW + 60)
    raw = rlp.encode([good.encode_item(), b"not an envelope", low.encode_item(), old.encode_item(),
                      future.encode_item()])
    events = p.receive(WakuCode.MESSAGES, raw, len(raw), NOW)
    assert events[0] == PacketIn("messages")
    (msgs,) = events[1:]
    assert isinstance(msgs, MessagesIn)
    assert [(r.envelope is not None and r.envelope.data, r.rejection) for r in msgs.envelopes] == [
        (b"good", None), (False, None), (b"low pow" * 200, Rejection.LOW_POW), (b"old", Rejection.EXPIRED),
        (b"future", Rejection.FUTURE)]
    assert msgs.envelopes[1] == Received(None)


def test_a_messages_packet_that_does_not_decode_ends_the_session() -> None:
    p = ready()
    events = p.receive(WakuCode.MESSAGES, b"\xff\x00", 2, NOW)
    assert events[:2] == [PacketIn("messages"), EnvelopesDropped("malformed")]
    assert isinstance(events[2], Disconnect) and events[2].cause == "malformed_messages"
    assert p.state is PeerState.CLOSED and p.receive(WakuCode.MESSAGES, encode_messages([]), 1, NOW) == []


def test_status_update_merges_and_repaces_only_what_it_carries() -> None:
    p = ready(pow_requirement=0.01, topic_interest=(TOPIC,), rate_limits=RateLimits(0, 50, 0),
              bytes_rate_limits=RateLimits(0, 100_000, 0))
    packets, by = p.pacer.packets_per_s, p.pacer.bytes_per_s
    events = p.receive(WakuCode.STATUS_UPDATE, encode_status(StatusOptions(pow_requirement=0.2)), 16, NOW)
    assert events == [PacketIn("status_update"), StatusUpdated(p.filter)]
    assert p.filter.pow_requirement == 0.2 and p.filter.topic_interest == frozenset({TOPIC})  # kept
    assert (p.pacer.packets_per_s, p.pacer.bytes_per_s) == (packets, by)  # no limits in it: unchanged
    p.receive(WakuCode.STATUS_UPDATE, encode_status(StatusOptions(bytes_rate_limits=RateLimits(0, 1_000_000, 0),
                                                                  confirmations=True)), 16, NOW)
    assert p.pacer.packets_per_s == packets and p.pacer.bytes_per_s > by and p.confirmations
    p.receive(WakuCode.STATUS_UPDATE, encode_status(StatusOptions(bloom=FULL_BLOOM)), 16, NOW)
    assert p.filter.topic_interest is None and p.filter.bloom == FULL_BLOOM  # a bloom replaces the interest
    (counted, bad) = p.receive(WakuCode.STATUS_UPDATE, b"\x05", 1, NOW)
    assert counted == PacketIn("status_update") and isinstance(bad, Disconnect) and bad.cause == "bad_status"


def test_other_codes_are_counted_answered_or_ignored() -> None:
    p = ready()
    h = bytes(32)
    resp = encode_message_response(MessageResponse(h, (EnvelopeErrorEntry(b"\x01" * 32, 21, "too low"),)))
    assert p.receive(WakuCode.MESSAGE_RESPONSE, resp, len(resp), NOW) == [
        PacketIn("message_response"), EnvelopesRefused((EnvelopeErrorEntry(b"\x01" * 32, 21, "too low"),))]
    assert p.receive(WakuCode.MESSAGE_RESPONSE, b"\x01", 1, NOW) == [PacketIn("message_response"),
                                                                    PacketIn("malformed")]
    assert p.receive(WakuCode.P2P_MESSAGE, encode_messages([]), 1, NOW) == [PacketIn("p2p_message"),
                                                                           EnvelopesDropped("p2p_message")]
    assert p.receive(WakuCode.STATUS, encode_status(StatusOptions(pow_requirement=9.0)), 1, NOW) == [PacketIn("status")]
    assert p.filter.pow_requirement == 0.001  # a second Status is ignored
    assert p.receive(WakuCode.BATCH_ACK, rlp.encode(h), 33, NOW) == [PacketIn("batch_ack")]
    assert p.receive(99, b"", 0, NOW) == [PacketIn("unknown")]
    assert p.state is PeerState.READY


def test_rate_limits_discard_then_disconnect_an_abusive_peer() -> None:
    p = ready(PeerConfig(rate_limit_packets=2))
    ping = encode_messages([])
    assert p.receive(WakuCode.MESSAGES, ping, 1, NOW)[0] == PacketIn("messages")
    assert p.receive(WakuCode.MESSAGES, ping, 1, NOW)[0] == PacketIn("messages")
    for _ in range(4):  # tolerated: discarded and counted
        assert p.receive(WakuCode.MESSAGES, ping, 1, NOW) == [RateLimited("packets")]
    assert p.receive(WakuCode.MESSAGES, ping, 1, NOW) == [
        RateLimited("packets"), Disconnect(DisconnectReason.SUBPROTOCOL_ERROR, "rate_limit")]
    assert p.state is PeerState.CLOSED
    slow = ready(PeerConfig(rate_limit_packets=2))
    for i in range(20):  # within the rate: never limited
        assert slow.receive(WakuCode.MESSAGES, ping, 1, NOW + i)[0] == PacketIn("messages")


def test_answers_to_our_packets_are_not_counted_against_the_peer() -> None:
    p = ready(PeerConfig(rate_limit_packets=1), confirmations=True)
    out = p.flush([envelope(b"to them")], NOW)
    (packet,) = out.packets
    p.sent(packet)  # a peer with confirmations owes a Message Response and a Batch Ack
    ack = rlp.encode(bytes(32))
    assert p.receive(WakuCode.MESSAGES, encode_messages([]), 1, NOW) == [PacketIn("messages"), MessagesIn(())]
    assert p.receive(WakuCode.BATCH_ACK, ack, 33, NOW) == [PacketIn("batch_ack")]  # owed: free
    assert p.receive(WakuCode.BATCH_ACK, ack, 33, NOW) == [PacketIn("batch_ack")]
    assert p.receive(WakuCode.BATCH_ACK, ack, 33, NOW) == [RateLimited("packets")]  # not owed any more


def test_flush_packs_paces_and_drops_the_expired() -> None:
    p = ready()
    envs = [envelope(b"%d" % i) for i in range(5)]
    out = p.flush(envs, NOW)
    assert out.expired == 0 and len(out.packets) == 1 and out.packets[0].envelopes == 5
    assert out.packets[0].code == WakuCode.MESSAGES and decode_messages(out.packets[0].data) == envs
    assert p.flush([], NOW) == Outgoing()
    paced = ready(rate_limits=RateLimits(0, 15, 0))  # status-go refills 20 packets/s for a limit of 15
    sent = sum(len(paced.flush([envelope(b"p%d" % i)], NOW).packets) for i in range(40))
    assert 0 < sent < 40  # the rest waits for its bucket
    later = paced.flush([], NOW + 60)  # everything still queued expired meanwhile
    assert later.packets == () and later.expired == 40 - sent


def test_tightest_limit_and_merge_filter() -> None:
    assert tightest_limit(None) == 0 and tightest_limit(RateLimits(0, 0, 9)) == 0  # per-topic is not enforced
    assert tightest_limit(RateLimits(100, 40, 1)) == 40 and tightest_limit(RateLimits(7, 0, 0)) == 7
    f = merge_filter(StatusOptions(pow_requirement=float("inf")))
    assert f.pow_requirement == 0.001  # not a finite requirement: the default
    assert merge_filter(StatusOptions(light_node=True), base=f).light
    assert merge_filter(StatusOptions()).bloom == FULL_BLOOM


WELL_FORMED = [encode_messages([]), encode_status(StatusOptions()), rlp.encode([1, [bytes(32), []]])]
packets = st.lists(st.tuples(st.sampled_from([*map(int, WakuCode), 2, 99]),
                             st.binary(max_size=64) | st.sampled_from(WELL_FORMED), st.floats(0, 2)), max_size=30)


@settings(max_examples=80, deadline=None)
@given(st.booleans(), packets)
def test_any_packet_sequence_yields_events_never_an_exception(light: bool,
                                                              script: list[tuple[int, bytes, float]]) -> None:
    """Bad input from the network is a counted event or a clean disconnect: whatever a peer sends,
    receive() returns known events, a Disconnect is the last event ever returned, and a closed
    peer stays closed."""
    p = WakuPeer(PeerConfig(rate_limit_packets=5, light_node=light))
    now, closed = NOW, False
    for code, data, dt in script:
        now += dt
        events = p.receive(code, data, len(data), now)
        if closed:
            assert events == []
        assert all(isinstance(e, EVENTS) for e in events)
        disconnects = [i for i, e in enumerate(events) if isinstance(e, Disconnect)]
        assert disconnects in ([], [len(events) - 1])
        closed = closed or bool(disconnects)
        assert (p.state is PeerState.CLOSED) == closed
        if p.state is PeerState.READY:
            p.flush([], now)


# --- what we want: topic interest + its bloom (the bridge's allow list, nwaku #1013) ---


def test_advertised_interest() -> None:
    assert advertised_interest(None) == (FULL_BLOOM, None)
    other = b"\x00\x01\x02\x00"
    bloom, interest = advertised_interest([other, TOPIC, TOPIC])
    assert interest == (other, TOPIC) and bloom == bloom_or([TOPIC, other])
    # the bloom matches both topics whichever way a peer builds a topic's bloom (status-go assigns)
    assert all(bloom_matches(bloom, topic_to_bloom(t, assign=a)) for t in (TOPIC, other) for a in (True, False))
    # both keys survive our codec (status-go reads key 5 first, waku/v1/peer.go setOptions)
    o = decode_status(encode_status(StatusOptions(bloom=bloom, topic_interest=interest)))
    assert o.topic_interest == interest and o.bloom == bloom
    many = [i.to_bytes(4, "big") for i in range(MAX_TOPIC_INTEREST + 1)]
    bloom, interest = advertised_interest(many)
    assert interest is None and bloom == bloom_or(many)  # over key 5's limit: the bloom alone


def test_envelopes_outside_our_interest_are_refused() -> None:
    """A peer that ignores our Status: what we did not ask for is refused, never pooled or bridged."""
    other = b"\x00\x01\x02\x00"
    p = ready(PeerConfig(topic_interest=frozenset({TOPIC}), bloom=bloom_or([TOPIC])))
    wanted = envelope(b"wanted")
    e = envelope(b"other")
    unwanted = Envelope(e.expiry, e.ttl, other, e.data, mine_smallest_nonce(e.expiry, e.ttl, other, e.data, 0.002) or 0)
    raw = rlp.encode([wanted.encode_item(), unwanted.encode_item()])
    (_, msgs) = p.receive(WakuCode.MESSAGES, raw, len(raw), NOW)
    assert isinstance(msgs, MessagesIn)
    assert [r.rejection for r in msgs.envelopes] == [None, Rejection.TOPIC]
