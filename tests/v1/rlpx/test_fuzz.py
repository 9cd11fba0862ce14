"""Hypothesis: the RLPx decoders answer garbage with our own errors, never anything else."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import nested_rlp_lists
from v1.errors import V1Error
from v1.rlpx.base import Capability, DisconnectReason, ProtocolError, decode_disconnect, decode_hello
from v1.rlpx.frame import FrameCodec
from v1.rlpx.handshake import Initiator, Recipient, decode_ack, decode_auth
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams, Session, State

KEY = NodeKey.generate()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ok_or_ours(fn: Callable[..., object], *args: object, **kw: object) -> object:
    try:
        return fn(*args, **kw)
    except V1Error:
        return None


@FUZZ
@given(st.binary(max_size=700))
def test_auth_decoder(data: bytes) -> None:
    _ok_or_ours(decode_auth, KEY.secret, data)


@FUZZ
@given(st.binary(max_size=700), st.booleans())
def test_ack_decoder(data: bytes, eip8: bool) -> None:
    _ok_or_ours(decode_ack, KEY.secret, data, eip8=eip8)


@FUZZ
@given(st.binary(max_size=300))
def test_hello_and_disconnect_decoders(data: bytes) -> None:
    _ok_or_ours(decode_hello, data)
    decode_disconnect(data) if data else None


def _codec_pair() -> tuple[FrameCodec, FrameCodec]:
    other = NodeKey.generate()
    init = Initiator(KEY.secret, other.pubkey, os.urandom)
    rec = Recipient(other.secret, os.urandom)
    res = rec.feed(init.auth_wire)
    assert res is not None
    ack, rsec, _ = res
    done = init.feed(ack)
    assert done is not None
    return FrameCodec(done[0], max_frame_size=1 << 16), FrameCodec(rsec, max_frame_size=1 << 16)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=5), st.binary(max_size=400))
def test_frame_decoder(frames: list[bytes], garbage: bytes) -> None:
    a, b = _codec_pair()
    wire = b"".join(a.encode(f) for f in frames)
    # valid frames decode exactly, in any chunking
    out: list[bytes] = []
    for i in range(0, len(wire), 7):
        out += b.feed(wire[i:i + 7])
    assert out == frames
    _ok_or_ours(b.feed, garbage)


@FUZZ
@given(st.binary(max_size=400))
def test_session_after_handshake(data: bytes) -> None:
    hp = HelloParams("f", (Capability("waku", 1, 128),))
    other = NodeKey.generate()
    a = Session(KEY, hp, os.urandom, remote_pubkey=other.pubkey)
    b = Session(other, hp, os.urandom)
    out_b, _ = b.receive(a.initiate())
    out_a, _ = a.receive(out_b)
    b.receive(out_a)
    assert a.state is State.READY and b.state is State.READY
    _ok_or_ours(b.receive, data)


def test_deeply_nested_disconnect_is_read_as_requested() -> None:
    """Fuzzing finding (docs/reliability.md): a ~3 KB nested list raised RecursionError out of the
    lenient Disconnect reader (which answers every malformed payload with REQUESTED)."""
    assert decode_disconnect(nested_rlp_lists(1100)) is DisconnectReason.REQUESTED


def test_a_nested_hello_within_the_size_cap_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_hello(nested_rlp_lists(740))
