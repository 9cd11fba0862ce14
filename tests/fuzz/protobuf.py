"""v2 protobuf harnesses: WakuMessage, Store v3 and legacy Store, Filter v2, Lightpush v3 and v2,
peer exchange, metadata, the length-prefixed framing every request/response shares, and the pubsub
and content topic strings those messages carry (parsed by lightpush, filter and autosharding)."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

import trio

from tests.fuzz.targets import Target, each, hex_strings, instrumented

with instrumented():
    from v2.codec import decode_uvarint, encode_uvarint
    from v2.core.message import WakuMessage
    from v2.core.topics import ContentTopic, PubsubTopic, autoshard
    from v2.errors import V2Error
    from v2.filter.rpc_codec import (
        FilterSubscribeRequest,
        FilterSubscribeResponse,
        FilterSubscribeType,
        MessagePush,
    )
    from v2.lightpush.rpc_codec import (
        LightpushRequest,
        LightpushResponse,
        PushRequest,
        PushResponse,
        PushRPC,
    )
    from v2.metadata.rpc_codec import Metadata, decode_metadata, encode_metadata
    from v2.peer_exchange.rpc_codec import decode_request, decode_response, encode_request, encode_response
    from v2.store import legacy_codec, rpc_codec
    from v2.stream import Stream

__all__ = ["TARGETS"]

_MSG = WakuMessage(b"hello", "/app/1/chat/proto", 0, 1_700_000_000_000_000_000, b"meta", True, b"proof")
_BARE = WakuMessage(b"x", "/a/1/b/c")


def message(data: bytes) -> None:
    msg = WakuMessage.decode(data)
    assert WakuMessage.decode(msg.encode()) == msg  # what we re-encode (the archive, a relay) reads back


def _message_seeds() -> list[bytes]:
    return [_MSG.encode(), _BARE.encode(), WakuMessage(b"", "t", version=2**32 - 1, timestamp=-1).encode()]


def topics(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # protobuf string fields are UTF-8: the parser refuses anything else
    each(V2Error, text, ContentTopic.parse, lambda t: autoshard(t, 1, 8))
    topic = PubsubTopic.parse(text)
    assert PubsubTopic.parse(str(topic)) == topic


def _topics_seeds() -> list[bytes]:
    return [b"/waku/2/rs/1/0", b"/waku/2/rs/65535/1023", b"/app/1/chat/proto", b"/0/app/1/chat/proto",
            b"/1/app/1/chat/proto", b"/toychat/2/huilong/proto"]


def store(data: bytes) -> None:
    each(V2Error, data, rpc_codec.decode_query, rpc_codec.decode_response, legacy_codec.decode_query,
         legacy_codec.decode_response)


def _store_seeds() -> list[bytes]:
    q = rpc_codec.StoreQuery("r1", True, "/waku/2/rs/1/0", ("/a/1/b/c",), 1, 2, (bytes(32),), bytes(32), True, 20)
    r = rpc_codec.StoreResponse("r1", 200, "OK", (rpc_codec.KeyValue.of(bytes(32), _MSG, "/waku/2/rs/1/0"),
                                                  rpc_codec.KeyValue(bytes(32))), bytes(32))
    cursor = legacy_codec.Index(bytes(32), 5, 6, "/waku/2/rs/1/0")
    lq = legacy_codec.HistoryQuery("r2", "/waku/2/rs/1/0", ("/a/1/b/c",), 10, False, cursor, 1, 2)
    lr = legacy_codec.HistoryResponse("r2", (_MSG.encode(), _BARE.encode()), cursor)
    return [rpc_codec.encode_query(q), rpc_codec.encode_response(r), legacy_codec.encode_query(lq),
            legacy_codec.encode_response(lr)]


def filter_(data: bytes) -> None:
    each(V2Error, data, FilterSubscribeRequest.decode, FilterSubscribeResponse.decode, MessagePush.decode)


def _filter_seeds() -> list[bytes]:
    return [FilterSubscribeRequest("r", FilterSubscribeType.SUBSCRIBE, "/waku/2/rs/1/0", ("/a/1/b/c",)).encode(),
            FilterSubscribeResponse("r", 200, "OK").encode(), MessagePush.of("/waku/2/rs/1/0", _MSG).encode()]


def lightpush(data: bytes) -> None:
    each(V2Error, data, LightpushRequest.decode, LightpushResponse.decode, PushRPC.decode)


def _lightpush_seeds() -> list[bytes]:
    return [LightpushRequest.of("r", "/waku/2/rs/1/0", _MSG).encode(), LightpushResponse("r", 200, "OK", 3).encode(),
            PushRPC("r", PushRequest.of("/waku/2/rs/1/0", _MSG)).encode(),
            PushRPC("r", response=PushResponse(False, "no peers")).encode()]


def peer_exchange(data: bytes) -> None:
    each(V2Error, data, decode_request, decode_response)


def _px_seeds() -> list[bytes]:
    enrs = hex_strings("eip778_enr.json", "rlp_hex")
    return [encode_request(5), encode_response(enrs), encode_response([], 503, "busy", num_peers=3)]


def metadata(data: bytes) -> None:
    decode_metadata(data)


def _metadata_seeds() -> list[bytes]:
    return [encode_metadata(Metadata(1, (0, 1, 7))), encode_metadata(Metadata(None)), encode_metadata(Metadata(16))]


class _Chunks(Stream):
    """An in-memory peer that delivers the wire in fixed-size pieces, then EOF."""

    def __init__(self, wire: bytes, step: int) -> None:
        super().__init__()
        self._wire, self._step = wire, step

    async def _read(self, n: int) -> bytes:
        out, self._wire = self._wire[:min(n, self._step)], self._wire[min(n, self._step):]
        return out

    async def _write(self, data: bytes) -> None:
        pass

    async def close_write(self) -> None:
        pass

    async def reset(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


_MAX_RESPONSE = 1024


def rpc_framing(data: bytes) -> None:
    """``step ‖ wire``: varint-prefixed frames read until EOF, at most 1 KiB each, the wire in
    ``step``-byte reads; every frame read is exactly the bytes the prefix announced."""
    if not data:
        return
    decode_uvarint(data, max_bytes=10)
    stream = _Chunks(data[1:], (1, 2, 3, 7, 64, 1024, 4096, 4096)[data[0] % 8])

    async def read_all() -> None:
        # No deadline: the in-memory stream never blocks, and a deadline's heap entry is only pruned
        # by trio's scheduler, which the fuzzer's one never-yielding host task never reaches.
        while (frame := await stream.read_lp(_MAX_RESPONSE, timeout=math.inf)) is not None:
            assert len(frame) <= _MAX_RESPONSE

    _drive(read_all)


def _drive(afn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``afn`` to completion.  Inside a trio task (the fuzz worker hosts the fuzzer in one, see
    Target.in_trio) the coroutine is stepped by hand: the in-memory stream never blocks, so one
    send() finishes it, 100x cheaper than a trio.run per input."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        trio.run(afn)
        return
    coro = afn()
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("the in-memory stream blocked")


def _framing_seeds() -> list[bytes]:
    frames = encode_uvarint(3) + b"abc" + encode_uvarint(0) + encode_uvarint(300) + bytes(300)
    return [b"\x00" + frames, b"\x03" + frames, b"\x01" + b"\xff" * 11, b"\x02" + encode_uvarint(2000)]


TARGETS = {
    "message": Target("message", message, V2Error, _message_seeds),
    "topics": Target("topics", topics, V2Error, _topics_seeds, max_len=8192),
    "store": Target("store", store, V2Error, _store_seeds),
    "filter": Target("filter", filter_, V2Error, _filter_seeds),
    "lightpush": Target("lightpush", lightpush, V2Error, _lightpush_seeds),
    "peer_exchange": Target("peer_exchange", peer_exchange, V2Error, _px_seeds),
    "metadata": Target("metadata", metadata, V2Error, _metadata_seeds),
    "rpc_framing": Target("rpc_framing", rpc_framing, V2Error, _framing_seeds, in_trio=True),
}
