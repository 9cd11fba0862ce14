"""SendPacer: what we send a peer stays within the packets/s and bytes/s it advertised, in order,
and nothing is lost without being handed back (waku-v1.md §10)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from v1.waku.envelope import Envelope
from v1.waku.ratelimit import PACING_MARGIN, SendPacer, refill_rate

MAX = 1024 * 1024 - 16


def env(i: int, size: int, expiry: int = 10_000) -> Envelope:
    return Envelope(expiry, 10, b"\x00\x00\x00\x01", i.to_bytes(4, "big") + b"x" * size, 0)


def test_unlimited_sends_everything_at_once_in_packets_of_at_most_1_mib() -> None:
    p = SendPacer(MAX)
    envs = [env(i, 300_000) for i in range(7)]
    p.offer(envs)
    packets, expired, oversize = p.take(0.0)
    assert expired == oversize == [] and len(p) == 0
    assert [e for b in packets for e in b] == envs
    assert all(sum(e.size for e in b) <= MAX for b in packets) and len(packets) == 3


def test_a_status_update_with_one_limit_keeps_the_other_as_advertised() -> None:
    p = SendPacer(MAX)
    p.set_limits(5, 1000)
    p.set_limits(bytes_per_s=2000)  # an update with option 6 only: packets/s stays 5 (x the margin, once)
    assert (p.packets_per_s, p.bytes_per_s) == (5 * PACING_MARGIN, 2000 * PACING_MARGIN)
    p.set_limits(packets_per_s=0)
    assert (p.packets_per_s, p.bytes_per_s) == (0, 2000 * PACING_MARGIN)


def test_envelopes_that_expire_while_held_back_are_handed_back() -> None:
    p = SendPacer(MAX)
    p.set_limits(0, 1000)
    p.offer([env(0, 800, expiry=100), env(1, 800, expiry=5), env(2, 800, expiry=100)])
    sent, expired, _ = p.take(0.0)
    assert [len(b) for b in sent] == [1] and expired == []
    sent, expired, _ = p.take(6.0)
    assert [e.data[:4] for e in expired] == [(1).to_bytes(4, "big")]
    assert [e.data[:4] for b in sent for e in b] == [(2).to_bytes(4, "big")]


def test_an_envelope_bigger_than_our_byte_bucket_goes_alone_when_the_bucket_is_full() -> None:
    p = SendPacer(MAX)
    p.set_limits(0, 1000)  # our bucket: 900 bytes; status-go's: 1000
    big = env(0, 890)
    assert 900 < big.size <= 1000 - 3
    p.offer([big, env(1, 10)])
    sent, _, oversize = p.take(0.0)
    assert [len(b) for b in sent] == [1] and oversize == []  # alone, into debt
    sent, _, _ = p.take(0.01)
    assert sent == []  # the debt is still being paid
    sent, _, _ = p.take(1.0)
    assert [len(b) for b in sent] == [1]


def test_an_envelope_over_the_peers_byte_limit_is_handed_back_not_sent() -> None:
    """status-go's byte bucket holds exactly the advertised limit (tsenart/tb): a larger packet is
    an exceedance every time, and DropPeerRateLimiterHandler disconnects us for it."""
    p = SendPacer(MAX)
    p.set_limits(0, 1000)
    p.offer([env(0, 5000), env(1, 10)])
    sent, expired, oversize = p.take(0.0)
    assert [e.data[:4] for e in oversize] == [(0).to_bytes(4, "big")] and expired == []
    assert [e.data[:4] for b in sent for e in b] == [(1).to_bytes(4, "big")]
    p.set_limits(bytes_per_s=0)  # limit lifted by a Status Update: nothing is held back
    p.offer([env(2, 5000)])
    sent, _, oversize = p.take(1.0)
    assert [len(b) for b in sent] == [1] and oversize == []


def test_an_envelope_that_cannot_fit_a_1_mib_packet_alone_is_handed_back() -> None:
    """status-go disconnects on a packet over its MaxMessageSize (1 MiB; waku/v1/peer.go Run): the
    list header around a lone envelope of almost 1 MiB would push it over."""
    p = SendPacer(MAX)
    fits, too_big = env(0, (1 << 20) - 40), env(1, (1 << 20) - 20)
    assert fits.size + 4 <= 1 << 20 < too_big.size + 4
    p.offer([fits, too_big])
    sent, _, oversize = p.take(0.0)
    assert sent == [[fits]] and oversize == [too_big]


def test_pacing_follows_what_status_go_buckets_really_refill() -> None:
    """tsenart/tb adds floor(0.5 + limit/10) tokens per 100 ms: 14/s refills only 10/s."""
    assert [refill_rate(x) for x in (1, 4, 5, 10, 14, 15, 24, 25)] == [0, 0, 10, 10, 10, 20, 20, 30]
    assert refill_rate(32_000) == 32_000
    p = SendPacer(MAX)
    p.set_limits(14, 32_000)
    assert p.packets_per_s == 10 * PACING_MARGIN and p.bytes_per_s == 32_000 * PACING_MARGIN
    p.set_limits(5)  # refills 10/s, but the advertised 5 is the promise we keep
    assert p.packets_per_s == 5 * PACING_MARGIN
    p.set_limits(3)  # a bucket that never refills: no sender can keep it; pace to the limit
    assert p.packets_per_s == 3 * PACING_MARGIN


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=120),
       packets_per_s=st.sampled_from([0, 1, 5, 10]), bytes_per_s=st.sampled_from([0, 10_000, 100_000, 1 << 20]),
       tick=st.sampled_from([0.05, 0.3, 1.0]), arrivals=st.integers(1, 10))
def test_within_the_advertised_limits_in_order_nothing_silently_lost(
        sizes: list[int], packets_per_s: int, bytes_per_s: int, tick: float, arrivals: int) -> None:
    p = SendPacer(MAX)
    p.set_limits(packets_per_s, bytes_per_s)
    envs = [env(i, s, expiry=30) for i, s in enumerate(sizes)]
    chunks = [envs[i::arrivals] for i in range(arrivals)]
    offered: list[Envelope] = []
    sent: list[Envelope] = []
    expired: list[Envelope] = []
    oversize: list[Envelope] = []
    bytes_sent = packets_sent = 0
    t = 0.0
    biggest = max(e.size for e in envs)
    for k in range(int(40 / tick)):
        t = k * tick
        if k < len(chunks):
            p.offer(chunks[k])
            offered += chunks[k]
        packets, gone, too_big = p.take(t)
        expired += gone
        oversize += too_big
        for b in packets:
            assert b and sum(e.size for e in b) <= max(MAX, b[0].size)
            sent += b
            bytes_sent += sum(e.size for e in b)
            packets_sent += 1
        # Over [0, t]: at most one second of burst plus the rate (the margin below the peer's
        # limit), plus one oversize envelope's debt.
        if bytes_per_s:
            assert bytes_sent <= bytes_per_s * PACING_MARGIN * (t + 1) + biggest
        if packets_per_s:
            assert packets_sent <= packets_per_s * PACING_MARGIN * t + max(1.0, packets_per_s * PACING_MARGIN) + 1e-9
    order = {id(e): i for i, e in enumerate(offered)}
    assert [order[id(e)] for e in sent] == sorted(order[id(e)] for e in sent)  # arrival order kept
    assert len(sent) + len(expired) + len(oversize) + len(p) == len(offered)
    assert all(bytes_per_s and e.size + 1 > bytes_per_s for e in oversize)
    assert all(not bytes_per_s or e.size + 4 <= bytes_per_s for e in sent)
    assert all(e.expiry < t for e in expired)
