"""The pure rate-limit core (v2/ratelimit.py): nwaku's ``--rate-limit`` syntax, the token bucket,
the service and per-peer buckets of nwaku's request limiter, and the relay's per-peer limit.
Time is passed in; nothing sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2.ratelimit import (
    DEFAULT_RATE_LIMITS,
    UNLIMITED,
    Limited,
    RateLimit,
    RateLimitConfigError,
    RateLimitedProtocol,
    RelayPeerLimiter,
    RequestLimiter,
    TokenBucket,
    parse_rate_limit,
    parse_rate_limits,
)

P = RateLimitedProtocol

# -- the setting syntax -------------------------------------------------------------------------


def test_parse_one_setting_as_nwaku() -> None:
    assert parse_rate_limit("store:100/1s") == ("store", RateLimit(100, 1.0))
    assert parse_rate_limit("  LightPush : 5 / 10 M ") == ("lightpush", RateLimit(5, 600.0))  # lazy spaces, any case
    assert parse_rate_limit("30/2h") == ("global", RateLimit(30, 7200.0))
    assert parse_rate_limit("px:7/250ms") == ("px", RateLimit(7, 0.25))
    assert parse_rate_limit("filter:0/1s")[1].unlimited  # a volume of 0 turns it off
    assert parse_rate_limit("storev3:10/0s")[1].unlimited  # so does a period of 0


@pytest.mark.parametrize("bad", ["", "store", "store:10", "store:10/", "store:10/1", "store:10/1d", "relay:10/1s",
                                 "global:10/1s", "store:-1/1s", "store:1.5/1s", "store:10/1.5s", "10/1s/1s",
                                 "store;10/1s", "store:10/s"])
def test_bad_settings_name_themselves(bad: str) -> None:
    with pytest.raises(RateLimitConfigError) as exc:
        parse_rate_limit(bad)
    assert repr(bad) in str(exc.value) and isinstance(exc.value, ValueError)


def test_defaults_apply_where_nothing_is_given() -> None:
    assert parse_rate_limits([]) == {p: DEFAULT_RATE_LIMITS[p] for p in P}
    got = parse_rate_limits(["lightpush:10/1s"])
    assert got[P.LIGHTPUSH] == RateLimit(10, 1.0) and got[P.PX] == DEFAULT_RATE_LIMITS[P.PX]
    assert not any(DEFAULT_RATE_LIMITS[p].unlimited for p in P if p is not P.GLOBAL)  # protective out of the box


def test_store_fills_only_the_versions_not_named_in_any_order() -> None:
    for settings in (["store:10/1s", "storev2:3/1s"], ["storev2:3/1s", "store:10/1s"]):
        got = parse_rate_limits(settings)
        assert (got[P.STOREV2], got[P.STOREV3]) == (RateLimit(3, 1.0), RateLimit(10, 1.0))


def test_last_setting_of_a_protocol_wins() -> None:
    assert parse_rate_limits(["px:1/1s", "px:2/1s"])[P.PX] == RateLimit(2, 1.0)


def test_a_global_setting_replaces_the_defaults_of_protocols_not_named() -> None:
    got = parse_rate_limits(["20/1m", "filter:0/1s"])
    assert got[P.FILTER].unlimited
    assert all(got[p] == RateLimit(20, 60.0) for p in (P.GLOBAL, P.STOREV2, P.STOREV3, P.LIGHTPUSH, P.PX))


def test_str_round_trips_through_the_parser() -> None:
    for text in ("store:100/1s", "px:5/10m", "filter:3/2h", "lightpush:9/250ms"):
        proto, limit = parse_rate_limit(text)
        assert f"{proto}:{limit}" == text
    assert str(UNLIMITED) == "no-limit"


_PROTOS = st.sampled_from(["", "store", "storev2", "storev3", "lightpush", "px", "filter"])
_UNITS = st.sampled_from([("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)])
_SPACE = st.sampled_from(["", " ", "\t", "  "])


@given(_PROTOS, st.integers(0, 10**9), st.integers(0, 10**6), _UNITS, st.lists(_SPACE, min_size=6, max_size=6),
       st.booleans())
def test_every_well_formed_setting_parses(proto: str, volume: int, period: int, unit: tuple[str, float],
                                          sp: list[str], upper: bool) -> None:
    text = f"{sp[0]}{proto}{sp[1]}:{sp[2]}" if proto else sp[0]
    text += f"{volume}{sp[3]}/{sp[4]}{period}{sp[5]}{unit[0]}"
    got_proto, limit = parse_rate_limit(text.upper() if upper else text)
    assert got_proto == (proto or "global")
    assert limit == RateLimit(volume, period * unit[1])
    assert limit.unlimited == (volume == 0 or period == 0)


@given(st.text(max_size=40))
def test_anything_else_is_a_config_error_never_a_crash(text: str) -> None:
    try:
        proto, limit = parse_rate_limit(text)
    except RateLimitConfigError:
        return
    assert proto in {"global", "store", *(p.value for p in P)} and limit.volume >= 0 and limit.period >= 0


@given(st.lists(st.tuples(_PROTOS, st.integers(0, 100), st.integers(1, 10)), max_size=8))
def test_every_protocol_always_gets_a_limit(entries: list[tuple[str, int, int]]) -> None:
    settings = [f"{p + ':' if p else ''}{v}/{s}s" for p, v, s in entries]
    got = parse_rate_limits(settings)
    assert set(got) == set(P)
    named = {p or "global" for p, _, _ in entries}
    for proto in P:
        if proto.value in named:
            last = [(v, s) for p, v, s in entries if (p or "global") == proto.value][-1]
            assert got[proto] == RateLimit(last[0], float(last[1]))


# -- the token bucket ---------------------------------------------------------------------------


def test_bucket_burst_then_continuous_refill() -> None:
    b = TokenBucket.of(RateLimit(3, 1.0))
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(0.2)  # 0.6 tokens
    assert b.take(0.4)  # 1.2 tokens
    assert [b.take(10.0) for _ in range(4)] == [True, True, True, False]  # capped at the volume


def test_bucket_clock_stepping_back_adds_nothing() -> None:
    b = TokenBucket.of(RateLimit(1, 10.0))
    assert b.take(100.0)
    assert not b.take(50.0)
    assert not b.take(100.0)
    assert b.take(110.0)


def test_bucket_invalid() -> None:
    with pytest.raises(ValueError):
        TokenBucket.of(UNLIMITED)
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0)


# -- the request limiter (nwaku request_limiter.nim) --------------------------------------------


@pytest.mark.parametrize(("limit", "peer"), [
    (RateLimit(100, 1.0), RateLimit(750, 10.0)),  # <= 1 s: x10, 75 %
    (RateLimit(30, 60.0), RateLimit(67, 180.0)),  # <= 1 min: x3 (trunc 67.5)
    (RateLimit(5, 3600.0), RateLimit(7, 7200.0)),  # beyond: x2
    (RateLimit(1, 3600.0), RateLimit(1, 7200.0)),  # never 0
])
def test_per_peer_bucket_is_nwakus_ratio(limit: RateLimit, peer: RateLimit) -> None:
    assert RequestLimiter(limit).peer_limit == peer
    assert RequestLimiter(limit, per_peer_only=True).peer_limit == limit  # filter: the setting itself


def test_service_bucket_holds_for_all_peers_and_refills() -> None:
    rl = RequestLimiter(RateLimit(4, 1.0))
    assert [rl.check(f"p{i}", 0.0) for i in range(5)] == [Limited.NO] * 4 + [Limited.SERVICE]
    assert rl.check("p9", 0.5) is Limited.NO  # two tokens back after half a second
    assert rl.check("p9", 0.5) is Limited.NO
    assert rl.check("p9", 0.5) is Limited.SERVICE


def test_one_peer_cannot_take_the_whole_service() -> None:
    rl = RequestLimiter(RateLimit(10, 1.0))  # peer: 75 per 10 s
    served = 0
    for second in range(100):  # the peer asks 10/s, the whole service, for 100 s
        served += sum(rl.check("greedy", float(second)) is Limited.NO for _ in range(10))
    assert served < 100 * 10  # a 10 s burst passes whole, but not a sustained takeover
    assert served <= 75 + 99 * 7.5  # its bucket: 75 at once, then 7.5/s
    assert rl.check("greedy", 99.0) is Limited.PEER
    assert rl.check("other", 99.0) is Limited.NO  # the rest of the service is left to others


def test_filter_limit_is_per_peer_only() -> None:
    rl = RequestLimiter(RateLimit(2, 60.0), per_peer_only=True)
    for peer in ("a", "b", "c"):
        assert [rl.check(peer, 0.0) for _ in range(3)] == [Limited.NO, Limited.NO, Limited.PEER]


def test_peer_table_is_bounded_by_idleness_and_size() -> None:
    rl = RequestLimiter(RateLimit(1, 1.0), max_peers=100)  # peer bucket: 7 per 10 s, full again after 10 s
    for i in range(250):
        rl.check(f"p{i}", 0.0)
    assert rl.tracked_peers == 100  # the least recently seen are forgotten first
    rl.check("late", 10.5)
    assert rl.tracked_peers == 1  # the others were idle for longer than a refill: forgotten
    rl.forget("late")
    assert rl.tracked_peers == 0


def test_unlimited_needs_no_limiter() -> None:
    with pytest.raises(ValueError):
        RequestLimiter(UNLIMITED)


# -- the relay's per-peer limit -----------------------------------------------------------------


def test_relay_messages_limit_with_burst() -> None:
    rl = RelayPeerLimiter(10, 0, burst_s=2.0)
    got = [rl.check("a", 100, 0.0) for _ in range(21)]
    assert got == [None] * 20 + ["messages"]
    assert rl.check("b", 100, 0.0) is None  # per peer
    assert rl.check("a", 100, 0.1) is None  # one message refilled in 0.1 s
    assert rl.check("a", 100, 0.1) == "messages"


def test_relay_bytes_limit_and_a_refused_message_costs_nothing() -> None:
    rl = RelayPeerLimiter(1000, 1000, burst_s=1.0)
    assert rl.check("a", 600, 0.0) is None
    assert rl.check("a", 600, 0.0) == "bytes"  # 400 left
    assert rl.check("a", 400, 0.0) is None  # the refused one spent neither bytes nor a message
    assert rl.check("a", 1, 0.0) == "bytes"


def test_relay_byte_bucket_holds_the_largest_message() -> None:
    rl = RelayPeerLimiter(0, 1000, burst_s=1.0, max_message=150_000)
    assert rl.check("a", 150_000, 0.0) is None  # a bucket smaller than one message would refuse it forever
    assert rl.check("a", 1, 0.0) == "bytes"


def test_relay_penalty_is_seconds_worth_of_excess() -> None:
    rl = RelayPeerLimiter(50, 1000)
    assert rl.penalty("messages", 10) == pytest.approx(1 / 50)
    assert rl.penalty("bytes", 500) == pytest.approx(0.5)
    # a peer at 3x its limit for 10 s: 1 000 refused, 20 penalties (P7: -10 x 20^2 = -4000)
    assert sum(rl.penalty("messages", 1) for _ in range(1000)) == pytest.approx(20)


def test_relay_limit_off() -> None:
    rl = RelayPeerLimiter(0, 0)
    assert not rl.enabled and all(rl.check("a", 10**6, 0.0) is None for _ in range(10_000))
    assert rl.tracked_peers == 0


def test_relay_peer_table_is_bounded() -> None:
    rl = RelayPeerLimiter(10, 0, max_peers=64)
    for i in range(1000):
        rl.check(f"p{i}", 1, 0.0)
    assert rl.tracked_peers == 64
    rl.check("x", 1, 1000.0)
    assert rl.tracked_peers == 1
