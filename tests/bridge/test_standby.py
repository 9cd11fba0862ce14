"""The warm-standby core (bridge/standby.py) on plain calls with an explicit ``now``: no trio, no
I/O.  One test per rule of its docstring; the shell that carries the decisions out (dedup, sink
history, publish) is tested in test_pipeline.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.standby import Action, Standby, StandbyConfig, looks_bridged_from_v1
from bridge.translate import NS, Unsealed, V1ToV2
from v2.core.message import WakuMessage

T0 = 1_000_000.0  # the pipeline's clock is wall seconds; any value does here
TOPIC = "/waku/1/0x1a2b3c4d/rfc26"


def v1_item(i: int, sent: int = int(T0)) -> tuple[bytes, V1ToV2]:
    key = i.to_bytes(32, "big")
    return key, V1ToV2("/waku/2/rs/1/4", WakuMessage(b"%d" % i, TOPIC, version=1, timestamp=sent * NS), key)


def v2_item(i: int, sent: int = int(T0), ttl: int = 10) -> tuple[bytes, Unsealed]:
    key = (1 << 200 | i).to_bytes(32, "big")
    return key, Unsealed(sent + ttl, ttl, b"\x1a\x2b\x3c\x4d", b"%d" % i, key)


def standby(active: bool = False, *, history: bool = False, **kw: float) -> Standby:
    return Standby(StandbyConfig(**kw), active=active, checks_history=history)  # type: ignore[arg-type]


def hold_v1(s: Standby, i: int, now: float, sent: int = int(T0), ttl: int = 10) -> bytes:
    key, item = v1_item(i, sent)
    s.hold(key, item, expires=sent + ttl, sent_at=sent, now=now)
    return key


def hold_v2(s: Standby, i: int, now: float, sent: int = int(T0), ttl: int = 10) -> bytes:
    key, item = v2_item(i, sent, ttl)
    s.hold(key, item, expires=item.expiry, sent_at=item.expiry - item.ttl, now=now)
    return key


def test_not_active_holds_both_directions_active_forwards() -> None:
    s = standby(active=True)
    assert s.on_v1(active=True, sent=T0, received_at=T0, now=T0) is Action.FORWARD
    assert s.on_v2(active=True) is Action.FORWARD
    assert s.on_v1(active=False, sent=T0, received_at=T0, now=T0) is Action.HOLD
    assert s.on_v2(active=False) is Action.HOLD


def test_a_translation_arriving_clears_the_other_direction_only() -> None:
    s = standby()
    k1, k2 = hold_v1(s, 1, T0), hold_v2(s, 2, T0)
    assert not s.clear(k1, from_v1=True)  # the same side again: still pending
    assert s.clear(k1, from_v1=False) and not s.clear(k1, from_v1=False)  # its v2 translation
    assert s.clear(k2, from_v1=True)
    assert len(s) == 0 and not s.clear(b"unknown", from_v1=True)


def test_pending_is_bounded_oldest_first() -> None:
    s = standby(max_pending=3)
    keys = [hold_v1(s, i, T0) for i in range(3)]
    assert hold_v1(s, 3, T0) and len(s) == 3
    assert list(s.pending) == [*keys[1:], (3).to_bytes(32, "big")]
    evicted = s.hold(*v1_item(4), expires=T0 + 10, sent_at=T0, now=T0)
    assert evicted == 1 and keys[1] not in s.pending


def test_takeover_bridges_v2_first_oldest_first_and_holds_young_v1() -> None:
    s = standby(echo_grace_s=2.0)
    young = hold_v1(s, 1, T0 + 1.5, sent=int(T0))
    old = hold_v1(s, 2, T0, sent=int(T0) - 1)
    late_v2, early_v2 = hold_v2(s, 3, T0, sent=int(T0)), hold_v2(s, 4, T0, sent=int(T0) - 2)
    b = s.takeover(active=True, now=T0 + 2.5)
    assert [k for k, _ in b.v2_to_v1] == [early_v2, late_v2]
    assert [k for k, _ in b.v1_to_v2] == [old] and b.expired == 0
    assert len(s) == 4  # nothing leaves pending before its turn (claim)
    assert s.held_until() == T0 + 2.0  # the earliest v1 item's grace end (``old``: due already)
    assert s.release(active=True, now=T0 + 3.4).v1_to_v2 == ((old, s.pending[old]),)
    for k in (old, early_v2, late_v2):
        assert s.claim(k) is not None
    assert s.claim(old) is None  # claimed once
    assert s.release(active=True, now=T0 + 3.5).v1_to_v2 == ((young, s.pending[young]),)


def test_expired_entries_are_dropped_at_takeover_and_by_expire() -> None:
    s = standby()
    hold_v1(s, 1, T0, ttl=5)
    hold_v2(s, 2, T0, ttl=5)
    alive = hold_v2(s, 3, T0, ttl=50)
    b = s.takeover(active=True, now=T0 + 5)
    assert b.expired == 2 and [k for k, _ in b.v2_to_v1] == [alive] and list(s.pending) == [alive]
    assert s.expire(T0 + 49) == 0 and s.expire(T0 + 50) == 1 and len(s) == 0


def test_release_does_nothing_while_not_active_and_keep_puts_back() -> None:
    s = standby()
    k = hold_v1(s, 1, T0)
    assert s.release(active=False, now=T0 + 60).v1_to_v2 == () and len(s) == 1
    p = s.claim(k)
    assert p is not None and len(s) == 0
    s.keep(k, p)  # leadership went while we bridged: for the next takeover
    assert s.pending[k] is p


def test_takeover_window_holds_v1_arrivals_for_the_grace_after_the_gate_opens() -> None:
    s = standby(active=False, echo_grace_s=2.0)
    assert s.takeover(active=True, now=T0) == s.takeover(active=True, now=T0)  # nothing pending
    assert s.on_v1(active=True, sent=T0, received_at=T0 + 1.9, now=T0 + 1.9) is Action.HOLD
    assert s.on_v1(active=True, sent=T0, received_at=T0 + 2.0, now=T0 + 2.0) is Action.FORWARD
    # the window counts from the latest opening: lose the gate, win it again
    assert s.on_v1(active=False, sent=T0, received_at=T0 + 10, now=T0 + 10) is Action.HOLD
    assert s.on_v1(active=True, sent=T0, received_at=T0 + 11, now=T0 + 11) is Action.HOLD
    assert s.in_takeover_window(T0 + 12.9) and not s.in_takeover_window(T0 + 13)


def test_a_gate_open_from_the_start_has_no_takeover_window() -> None:
    s = standby(active=True, echo_grace_s=2.0)
    assert s.on_v1(active=True, sent=T0, received_at=T0, now=T0) is Action.FORWARD
    assert not s.in_takeover_window(T0)


def test_envelopes_created_before_warm_are_uncertain_only_with_a_history() -> None:
    for history in (False, True):
        s = standby(active=True, history=history, warmup_s=5.0)
        assert not s.uncertain(T0 - 100)  # not started: nothing is uncertain yet
        s.start(T0)
        expect = Action.HOLD if history else Action.FORWARD
        assert s.on_v1(active=True, sent=T0 + 4, received_at=T0 + 6, now=T0 + 6) is expect
        assert s.on_v1(active=True, sent=T0 + 5, received_at=T0 + 6, now=T0 + 6) is Action.FORWARD


def test_v2_messages_that_look_bridged_wait_the_grace_once_running() -> None:
    s = standby(active=True, echo_grace_s=1.0, max_echoes=2)
    looks = WakuMessage(b"x", TOPIC, version=1, timestamp=int(T0) * NS)
    assert looks_bridged_from_v1(looks)
    assert not s.defer_echo(looks, T0, T0)  # not running yet: bridged at once
    s.start(T0)
    for name, m in (("not whole second", WakuMessage(b"x", TOPIC, version=1, timestamp=int(T0) * NS + 1)),
                    ("version 0", WakuMessage(b"x", TOPIC, version=0, timestamp=int(T0) * NS)),
                    ("not /waku/1", WakuMessage(b"x", "/app/1/chat/proto", version=1, timestamp=int(T0) * NS)),
                    ("no timestamp", WakuMessage(b"x", TOPIC, version=1))):
        assert not looks_bridged_from_v1(m) and not s.defer_echo(m, T0, T0), name
    assert s.next_echo() is None
    assert s.defer_echo(looks, T0 - 0.5, T0) and s.defer_echo(looks, T0 + 0.1, T0 + 0.2)
    assert not s.defer_echo(looks, T0 + 0.3, T0 + 0.3)  # full: bridge now rather than drop
    assert s.next_echo() == T0 + 1.0
    assert s.pop_echo() == (looks, T0 - 0.5) and s.next_echo() == T0 + 1.2
    s.pop_echo()
    assert s.next_echo() is None
    assert not standby(echo_grace_s=0).defer_echo(looks, T0, T0)  # no grace configured


events = st.lists(st.tuples(st.sampled_from(["v1", "v2", "clear1", "clear2", "takeover", "release", "claim",
                                             "expire", "gate"]),
                            st.integers(0, 7), st.floats(0, 3)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(events)
def test_a_takeover_partitions_pending_and_nothing_is_offered_twice(script: list[tuple[str, int, float]]) -> None:
    """Whatever arrives in whatever order: a takeover splits pending exactly into what it offers,
    what the echo grace still holds and what expired; a release offers exactly the v1 items out of
    their grace; no batch offers a key twice, an expired entry, or a v1 item within its grace."""
    grace = 2.0
    s = standby(active=False, echo_grace_s=grace, max_pending=6)
    now, active = T0, False
    for op, i, dt in script:
        now += dt
        before = dict(s.pending)
        if op == "v1":
            hold_v1(s, i, now, sent=int(now) - i, ttl=5 + i)
        elif op == "v2":
            hold_v2(s, i, now, sent=int(now) - i, ttl=5 + i)
        elif op in ("clear1", "clear2"):  # a duplicate from v1 clears a v2 item, and vice versa
            k = i.to_bytes(32, "big") if op == "clear2" else (1 << 200 | i).to_bytes(32, "big")
            s.clear(k, from_v1=op == "clear1")
            assert set(before) - set(s.pending) <= {k}
        elif op in ("takeover", "release"):
            b = s.takeover(active=active, now=now) if op == "takeover" else s.release(active=active, now=now)
            offered = [k for k, _ in b.v2_to_v1 + b.v1_to_v2]
            assert len(offered) == len(set(offered))
            in_grace = {k for k, p in before.items() if p.from_v1 and p.held_at + grace > now}
            if op == "takeover":  # everything but the v1 items within their grace
                considered = set(before) - in_grace
            else:  # while active: the v1 items out of their grace
                considered = {k for k, p in before.items() if active and p.from_v1} - in_grace
                assert b.v2_to_v1 == ()
            expired = {k for k in considered if before[k].expires <= now}
            assert set(offered) == considered - expired and b.expired == len(expired)
            assert set(s.pending) == set(before) - expired  # offered items stay until claimed
            for part in (b.v2_to_v1, b.v1_to_v2):  # oldest first
                assert [p.sent_at for _, p in part] == sorted(p.sent_at for _, p in part)
        elif op == "claim" and s.pending:
            k = sorted(s.pending)[i % len(s.pending)]
            assert s.claim(k) is before[k] and k not in s.pending
        elif op == "expire":
            n = s.expire(now)
            assert n == len(before) - len(s.pending) and all(p.expires > now for p in s.pending.values())
        elif op == "gate":
            active = not active
            s.observe(active, now)
        assert len(s) <= 6
