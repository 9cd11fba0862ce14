"""The pool's per-peer outboxes offer exactly what a full rescan of the pool would (the old
implementation, kept here as the model), in the same order, under any sequence of operations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from v1.waku.envelope import Envelope
from v1.waku.pool import AddResult, EnvelopePool, PeerFilter, Rejection
from v1.waku.pow import SizeRule, pow_value

PEERS = ["p1", "p2", "p3"]
ANY = PeerFilter(pow_requirement=0)


class Model:
    """Every envelope offered once to each peer that has not seen it: a scan of the whole pool;
    when full, expire, then evict the lowest PoW (the oldest of equals) or refuse a lower one."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: dict[bytes, Envelope] = {}
        self.known: dict[str, set[bytes]] = {}

    def add(self, env: Envelope, now: float, origin: str | None) -> AddResult:
        if origin is not None:
            self.known.setdefault(origin, set()).add(env.hash)
        if env.hash in self.entries:
            return AddResult(False, Rejection.DUPLICATE)
        evicted = 0
        if len(self.entries) >= self.capacity:
            before = len(self.entries)
            self.expire(now)
            evicted += before - len(self.entries)
        if len(self.entries) >= self.capacity:
            low = min(self.entries.values(), key=lambda e: pow_value(e, SizeRule.SPEC))
            if pow_value(low, SizeRule.SPEC) >= pow_value(env, SizeRule.SPEC):
                return AddResult(False, Rejection.FULL_NEW)
            self.drop(low.hash)
            evicted += 1
        self.entries[env.hash] = env
        return AddResult(True, None, evicted)

    def drop(self, h: bytes) -> None:
        del self.entries[h]
        for k in self.known.values():
            k.discard(h)

    def pending_for(self, peer: str, now: float) -> list[Envelope]:
        known = self.known.setdefault(peer, set())
        out = [e for h, e in self.entries.items() if h not in known and e.expiry >= now]
        known.update(e.hash for e in out)
        return out

    def expire(self, now: float) -> None:
        for h in [h for h, e in self.entries.items() if e.expiry < now]:
            self.drop(h)


op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 60), st.sampled_from([None, *PEERS])),
    st.tuples(st.just("flush"), st.sampled_from(PEERS), st.just(None)),
    st.tuples(st.just("tick"), st.integers(1, 5), st.just(None)),
    st.tuples(st.just("reconnect"), st.sampled_from(PEERS), st.just(None)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=80), st.sampled_from([4, 8, 10_000]))
def test_outboxes_and_heaps_match_a_full_rescan(ops: list[tuple[str, object, object]], capacity: int) -> None:
    pool, model = EnvelopePool(capacity=capacity), Model(capacity)
    for p in PEERS:
        pool.add_peer(p)
    now = 1000.0
    for kind, a, b in ops:
        if kind == "add":
            assert isinstance(a, int)
            # nonces 0..2: a few PoW levels, so a full pool evicts, and refuses
            env = Envelope(1000 + 3 * (a % 7) + 1, 10, b"abcd", bytes([a % 20]), a // 20)
            if env.expiry >= now:
                origin = b if isinstance(b, str) else None
                assert pool.add(env, now, origin=origin) == model.add(env, now, origin)
                assert len(pool) == len(model.entries)
        elif kind == "flush":
            assert isinstance(a, str)
            assert pool.pending_for(a, ANY, now) == model.pending_for(a, now)
        elif kind == "tick":
            assert isinstance(a, int)
            now += a
            pool.expire(now)
            model.expire(now)
        else:  # the peer disconnects and comes back: it is offered the whole pool again
            assert isinstance(a, str)
            pool.remove_peer(a)
            pool.add_peer(a)
            model.known.pop(a, None)
    for p in PEERS:
        assert pool.pending_for(p, ANY, now) == model.pending_for(p, now)


def test_an_envelope_from_the_near_future_waits_until_a_status_go_peer_would_accept_its_pow() -> None:
    """status-go recomputes the PoW of an envelope created in the future with ttl + (sent - now + 1)
    (waku/waku.go addAndBridge) and refuses it below its requirement: we hold it back until then."""
    from v1.waku.pool import receiver_pow
    from v1.waku.pow import mine_smallest_nonce

    now = 1000.5
    sent, ttl, topic, data = 1002, 10, b"\x01\x02\x03\x04", b"future"
    nonce = mine_smallest_nonce(sent + ttl, ttl, topic, data, 0.3, size_rule=SizeRule.SPEC)
    assert nonce is not None
    env = Envelope(sent + ttl, ttl, topic, data, nonce)
    p = pow_value(env, SizeRule.SPEC)
    assert receiver_pow(p, env, now) == p * 10 / (10 + 2 + 1)
    assert receiver_pow(p, env, 1002.0) == p
    req = p * 0.95  # met by the envelope's own PoW, not by the stretched one
    pool = EnvelopePool(16)
    pool.add_peer("go")
    assert pool.add(env, now).new
    filt = PeerFilter(pow_requirement=req)
    assert pool.pending_for("go", filt, now) == []
    assert pool.pending_for("go", filt, 1001.9) == []  # status-go still sees it 1 s ahead
    assert pool.pending_for("go", filt, 1002.0) == [env]
    assert pool.pending_for("go", filt, 1002.3) == []  # once only
    # a requirement it never meets: dropped for that peer at once, as before
    pool.add_peer("strict")
    assert pool.pending_for("strict", PeerFilter(pow_requirement=p * 2), now) == []
    assert pool.pending_for("strict", PeerFilter(pow_requirement=0), 1002.0) == []
