"""Sessions, the handshake, requests and answers of the discv5 core, on pure function calls."""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import FLIPS, mutate
from v2.discv5.core import (
    Addr,
    CallDone,
    CallFailed,
    Discv5Core,
    Dropped,
    DropReason,
    FailReason,
    NodeContact,
    Output,
    Send,
)
from v2.discv5.messages import FindNode, Nodes, Ping, Pong, TalkReq, TalkResp
from v2.discv5.packet import DISCV5_PROTOCOL_ID, encode_ordinary
from v2.discv5.table import log_distance
from v2.enr.enr import Enr


def rng_of(seed: int) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


class Net:
    """An in-memory UDP network of cores: every Send is delivered (or dropped by ``lose``)."""

    def __init__(self) -> None:
        self.nodes: dict[Addr, Discv5Core] = {}
        self.events: dict[Addr, list[Output]] = {}
        self.lose: Callable[[Addr, Addr, bytes], bool] = lambda src, dst, data: False
        self.sent = 0

    def add(self, seed: int, port: int, *, protocol_id: bytes = b"d5waku", ip: str = "127.0.0.1") -> Discv5Core:
        key = random.Random(seed).randbytes(32)
        enr = Enr.build(key, 1, ip=ip, udp=port)
        core = Discv5Core(key, enr, rng_of(seed), protocol_id=protocol_id)
        self.nodes[(ip, port)] = core
        self.events[(ip, port)] = []
        return core

    def addr(self, core: Discv5Core) -> Addr:
        return next(a for a, c in self.nodes.items() if c is core)

    def run(self, src: Addr, outputs: list[Output], now: float = 0.0) -> None:
        queue = [(src, o) for o in outputs]
        while queue:
            frm, o = queue.pop(0)
            if not isinstance(o, Send):
                self.events[frm].append(o)
                continue
            self.sent += 1
            dst = self.nodes.get(o.addr)
            if dst is None or self.lose(frm, o.addr, o.data):
                continue
            queue += [(o.addr, r) for r in dst.datagram(frm, o.data, now)]

    def done(self, core: Discv5Core) -> list[CallDone]:
        return [e for e in self.events[self.addr(core)] if isinstance(e, CallDone)]

    def drops(self, core: Discv5Core) -> list[DropReason]:
        return [e.reason for e in self.events[self.addr(core)] if isinstance(e, Dropped)]


def net_drops(outs: list[Output]) -> list[DropReason]:
    return [o.reason for o in outs if isinstance(o, Dropped)]


def test_ping_handshake_and_session_reuse() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    rid, out = a.ping(b.local_enr, 0.0)
    net.run(net.addr(a), out)
    [done] = net.done(a)
    assert done.request_id == rid and done.node_id == b.local_id
    [pong] = done.responses
    assert isinstance(pong, Pong) and pong.enr_seq == 1 and pong.ip == bytes([127, 0, 0, 1]) and pong.port == 9001
    # B learnt A's record from the handshake (its WHOAREYOU said enr-seq 0).
    assert [e.enr for e in net.events[net.addr(b)] if isinstance(e, NodeContact)] == [a.local_enr]
    assert a.has_session(b.local_id, net.addr(b)) and b.has_session(a.local_id, net.addr(a))
    # With a session both ways: one packet out, one back.
    before = net.sent
    _, out = b.ping(a.local_enr, 1.0)
    net.run(net.addr(b), out)
    assert len(net.done(b)) == 1 and net.sent - before == 2
    _, out = a.request(b.local_enr, TalkReq(b"", b"unknown", b"hi"), 2.0)
    net.run(net.addr(a), out)
    assert net.done(a)[-1].responses == (TalkResp(net.done(a)[-1].request_id, b""),)


def test_requests_queue_behind_one_handshake() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    outs: list[Output] = []
    for _ in range(3):
        outs += a.ping(b.local_enr, 0.0)[1]
    assert sum(isinstance(o, Send) for o in outs) == 1  # the other two wait for the handshake
    net.run(net.addr(a), outs)
    assert len(net.done(a)) == 3 and not net.drops(b)


def test_findnode_returns_only_live_nodes_at_the_distance() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    others = [net.add(10 + i, 9100 + i) for i in range(6)]
    for i, o in enumerate(others):
        b.table.add(o.local_enr, 0.0, live=i % 2 == 0)
    dists = tuple(sorted({log_distance(b.local_id, o.local_id) for o in others}))
    _, out = a.findnode(b.local_enr, dists, 0.0)
    net.run(net.addr(a), out)
    [done] = net.done(a)
    assert {e.node_id for e in done.enrs} == {o.local_id for i, o in enumerate(others) if i % 2 == 0}
    # Distance 0 is the responder's own record.
    _, out = a.findnode(b.local_enr, (0,), 1.0)
    net.run(net.addr(a), out)
    assert net.done(a)[-1].enrs == (b.local_enr,)


def test_nodes_split_over_packets_and_wrong_distance_dropped() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    others = [net.add(100 + i, 9200 + i) for i in range(40)]
    for o in others:
        b.table.add(o.local_enr, 0.0, live=True)
    top = [d for d in range(256, 250, -1)]
    _, out = a.findnode(b.local_enr, tuple(top), 0.0)
    net.run(net.addr(a), out)
    [done] = net.done(a)
    expect = {o.local_id for o in others if log_distance(b.local_id, o.local_id) in top}
    assert 1 < len(done.responses) <= 5  # split at 1000 bytes of records, as geth packNodes
    assert all(isinstance(m, Nodes) and m.total == len(done.responses) for m in done.responses)
    assert {e.node_id for e in done.enrs} <= expect and len(done.enrs) == min(16, len(expect))
    # Asking for a distance nobody is at: the records B sends for other distances are refused.
    assert not [e for e in done.enrs if log_distance(b.local_id, e.node_id) not in top]


def test_lost_handshake_times_out_then_recovers() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    net.lose = lambda src, dst, data: True
    _, out = a.ping(b.local_enr, 0.0)
    net.run(net.addr(a), out)
    assert a.next_deadline() == 4.0
    assert not a.tick(3.9)
    [failed] = a.tick(4.0)
    assert isinstance(failed, CallFailed) and failed.reason == FailReason.TIMEOUT
    net.lose = lambda src, dst, data: False
    _, out = a.ping(b.local_enr, 5.0)
    net.run(net.addr(a), out, 5.0)
    assert len(net.done(a)) == 1


def test_session_lost_on_one_side_rehandshakes() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    b._sessions.clear()  # B restarted
    net.run(net.addr(a), a.ping(b.local_enr, 1.0)[1], 1.0)
    assert len(net.done(a)) == 2


def test_wrong_protocol_id_is_dropped_silently() -> None:
    net = Net()
    a = net.add(1, 9001, protocol_id=DISCV5_PROTOCOL_ID)
    b = net.add(2, 9002)
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    assert net.drops(b) == [DropReason.WRONG_PROTOCOL] and not net.done(a)
    # Two Ethereum-id nodes talk fine.
    c = net.add(3, 9003, protocol_id=DISCV5_PROTOCOL_ID)
    net.run(net.addr(a), a.ping(c.local_enr, 0.0)[1])
    assert len(net.done(a)) == 1


def test_replay_unknown_nonce_unexpected_handshake() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    captured: list[bytes] = []

    def capture(src: Addr, dst: Addr, data: bytes) -> bool:
        if src == net.addr(a):
            captured.append(data)
        return False

    net.lose = capture
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    net.run(net.addr(a), a.ping(b.local_enr, 1.0)[1], 1.0)
    random_pkt, handshake, message = captured
    assert b.datagram(net.addr(a), message, 2.0) == [Dropped(net.addr(a), DropReason.REPLAYED)]
    # A handshake without a pending challenge (replayed): dropped.
    assert [o.reason for o in b.datagram(net.addr(a), handshake, 2.0) if isinstance(o, Dropped)] == [
        DropReason.UNEXPECTED_HANDSHAKE]
    # WHOAREYOU nobody asked for (B answers the random packet again: A has no call with that nonce).
    [whoareyou] = [o for o in b.datagram(net.addr(a), random_pkt, 2.0) if isinstance(o, Send)]
    assert a.datagram(net.addr(b), whoareyou.data, 2.0) == [Dropped(net.addr(b), DropReason.UNKNOWN_NONCE)]
    # Garbage and oversize.
    assert net_drops(b.datagram(net.addr(a), bytes(100), 2.0)) == [DropReason.WRONG_PROTOCOL]
    assert b.datagram(net.addr(a), bytes(1281), 2.0) == [Dropped(net.addr(a), DropReason.OVERSIZE)]


def test_whoareyou_flood_is_bounded() -> None:
    net = Net()
    b = net.add(2, 9002)
    b.max_challenges = 8
    flood = [encode_ordinary(b.local_id, random.Random(i).randbytes(32), bytes(12), bytes(16), None, b"",
                             random_message=bytes(20)) for i in range(20)]
    outs = [o for i, p in enumerate(flood) for o in b.datagram(("127.0.0.9", 20000 + i), p, 0.0)]
    assert sum(isinstance(o, Dropped) and o.reason == DropReason.CHALLENGE_LIMIT for o in outs) == 12
    assert len(b._challenges) == 8
    b.tick(2.0)
    assert not b._challenges  # expired after the handshake timeout


def test_response_from_another_endpoint_is_unsolicited() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    _rid, _out = a.ping(b.local_enr, 1.0)
    # B answers a PING that claims to come from a different port: A has no such call there.
    sess = b._sessions[(a.local_id, net.addr(a))]
    _nonce, send = b._send_message(a.local_id, net.addr(a), sess, Pong(b"\x00" * 8, 1, bytes(4), 1))
    assert a.datagram(net.addr(b), send.data, 1.0) == [Dropped(net.addr(b), DropReason.UNSOLICITED_RESPONSE)]


def test_ping_answer_type_mismatch() -> None:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    rid, _ = a.ping(b.local_enr, 1.0)
    sess = b._sessions[(a.local_id, net.addr(a))]
    _, send = b._send_message(a.local_id, net.addr(a), sess, Nodes(rid, 1, ()))
    assert [o.reason for o in a.datagram(net.addr(b), send.data, 1.0) if isinstance(o, Dropped)] == [
        DropReason.UNSOLICITED_RESPONSE]
    _ = FindNode, Ping  # imported for readers of the message set


def test_verify_nodes_rules() -> None:
    from v2.discv5.core import verify_nodes

    key = random.Random(5).randbytes(32)
    responder = Enr.build(key, 1, ip="127.0.0.1", udp=9000)
    recs = [Enr.build(random.Random(50 + i).randbytes(32), 1, ip="127.0.0.1", udp=9100 + i) for i in range(6)]
    d0 = log_distance(responder.node_id, recs[0].node_id)
    ok = [r for r in recs if log_distance(responder.node_id, r.node_id) == d0]
    got = verify_nodes(responder, ("127.0.0.1", 9000), (d0,), [r.raw for r in recs] + [recs[0].raw, b"\xc0"])
    assert got == ok  # wrong distances, the duplicate and the non-record are dropped
    low = Enr.build(random.Random(50).randbytes(32), 2, ip="127.0.0.1", udp=1024)
    assert verify_nodes(responder, ("127.0.0.1", 9000), (d0,), [low.raw]) == []  # geth errLowPort
    # A loopback record relayed by a public sender is refused (netutil.CheckRelayAddr).
    assert verify_nodes(responder, ("8.8.8.8", 9000), (d0,), [recs[0].raw]) == []


def _captured_exchange() -> tuple[Net, Discv5Core, Discv5Core, list[tuple[Addr, bytes]]]:
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    for o in (net.add(30 + i, 9300 + i) for i in range(4)):
        b.table.add(o.local_enr, 0.0, live=True)
    packets: list[tuple[Addr, bytes]] = []

    def capture(src: Addr, dst: Addr, data: bytes) -> bool:
        packets.append((src, data))
        return False

    net.lose = capture
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    net.run(net.addr(a), a.findnode(b.local_enr, (254, 255, 256), 0.0)[1])
    net.run(net.addr(a), a.request(b.local_enr, TalkReq(b"", b"p", b"q"), 0.0)[1])
    net.lose = lambda src, dst, data: False
    return net, a, b, packets


_NET, _A, _B, _PACKETS = _captured_exchange()


@settings(max_examples=250, deadline=None)
@given(st.integers(0, len(_PACKETS) - 1), FLIPS, st.integers(0, 64), st.booleans())
def test_fuzz_core_never_raises(index: int, flips: list[tuple[int, int]], cut: int, fresh: bool) -> None:
    """Mutated real packets (all kinds, both directions) only ever become outputs, never exceptions."""
    src, data = _PACKETS[index]
    data = mutate(data, flips)
    data = data[: len(data) - cut] if cut < len(data) else data
    _net, a, b, _ = _captured_exchange() if fresh else (_NET, _A, _B, None)
    for core in (a, b):
        out = core.datagram(src, data, 1.0)
        assert isinstance(out, list)
        core.tick(10.0)


def _pending_handshake() -> tuple[Discv5Core, Addr, bytes]:
    """B holding a challenge for A, and A's handshake packet answering it (not yet delivered)."""
    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    [first] = a.ping(b.local_enr, 0.0)[1]
    assert isinstance(first, Send)
    [whoareyou] = b.datagram(net.addr(a), first.data, 0.0)
    assert isinstance(whoareyou, Send)
    [handshake] = a.datagram(net.addr(b), whoareyou.data, 0.0)
    assert isinstance(handshake, Send)
    return b, net.addr(a), handshake.data


@settings(max_examples=200, deadline=None)
@given(FLIPS)
def test_fuzz_handshake_with_pending_challenge(flips: list[tuple[int, int]]) -> None:
    b, src, data = _pending_handshake()
    out = b.datagram(src, mutate(data, flips), 0.5)
    assert all(isinstance(o, Send | Dropped | NodeContact) for o in out)


def test_pending_handshake_unmutated_is_accepted() -> None:
    b, src, data = _pending_handshake()
    out = b.datagram(src, data, 0.5)
    assert [type(o) for o in out] == [NodeContact, Send]


def test_ping_with_newer_seq_flags_a_stale_record() -> None:
    from v2.discv5.core import StaleRecord

    net = Net()
    a, b = net.add(1, 9001), net.add(2, 9002)
    net.run(net.addr(a), a.ping(b.local_enr, 0.0)[1])
    a.local_enr = Enr.build(random.Random(1).randbytes(32), 5, ip="127.0.0.1", udp=9001)
    net.run(net.addr(a), a.ping(b.local_enr, 1.0)[1], 1.0)
    stale = [e for e in net.events[net.addr(b)] if isinstance(e, StaleRecord)]
    assert [(s.enr.seq, s.seq) for s in stale] == [(1, 5)]
    # B fetches it with FINDNODE [0]: the answer is A's current record.
    net.run(net.addr(b), b.findnode(stale[0].enr, (0,), 2.0)[1], 2.0)
    assert net.done(b)[-1].enrs == (a.local_enr,)
