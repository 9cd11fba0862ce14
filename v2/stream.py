"""The one stream type the v2 protocols see (implemented over py-libp2p in v2/host.py).

Waku request/response framing (waku-v2.md §2): one exchange per stream, each protobuf prefixed
by its length as an unsigned varint; the server answers and closes its write side.  ``read_lp``
returns None for a clean EOF before any byte (js-waku pre-opens streams and may close them
unused), and refuses an announced length above ``max_size`` before reading the body.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import trio

from v2.codec import VarintError, decode_uvarint, encode_uvarint
from v2.errors import V2DecodeError, V2Error

__all__ = ["FrameTooLarge", "Stream", "StreamClosedError", "StreamTimeout", "encode_uvarint"]


class StreamClosedError(V2Error):
    """The stream ended (EOF mid-message, reset, or a broken connection)."""


class StreamTimeout(StreamClosedError):
    pass


class FrameTooLarge(V2DecodeError):
    pass


class Stream(ABC):
    remote_peer: str
    protocol: str

    def __init__(self) -> None:
        self._buf = bytearray()

    @abstractmethod
    async def _read(self, n: int) -> bytes:
        """Up to ``n`` bytes; b"" at EOF; raises StreamClosedError on reset."""

    @abstractmethod
    async def _write(self, data: bytes) -> None: ...

    @abstractmethod
    async def close_write(self) -> None: ...

    @abstractmethod
    async def reset(self) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    async def _fill(self, n: int) -> bool:
        """Ensure ``n`` buffered bytes; False on EOF before that."""
        while len(self._buf) < n:
            chunk = await self._read(max(n - len(self._buf), 4096))
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def read_lp(self, max_size: int, timeout: float = 10.0) -> bytes | None:
        with trio.move_on_after(timeout) as scope:
            while True:
                try:
                    head = decode_uvarint(self._buf, max_bytes=10)
                except VarintError:
                    raise FrameTooLarge("varint length prefix too long") from None
                if head is not None:
                    break
                if not await self._fill(len(self._buf) + 1):
                    if not self._buf:
                        return None  # clean EOF before a message
                    raise StreamClosedError("EOF inside a length prefix")
            length, i = head
            if length > max_size:
                raise FrameTooLarge(f"message of {length} bytes exceeds {max_size}")
            if not await self._fill(i + length):
                raise StreamClosedError("EOF inside a message")
            data = bytes(self._buf[i:i + length])
            del self._buf[:i + length]
            return data
        assert scope.cancelled_caught
        raise StreamTimeout(f"no complete message within {timeout} s")

    async def read_exactly(self, n: int, timeout: float = 10.0) -> bytes:
        """Exactly ``n`` raw bytes, no framing (libp2p ping echoes 32 bare bytes); raises
        StreamClosedError on EOF first and StreamTimeout after ``timeout``."""
        with trio.move_on_after(timeout) as scope:
            if not await self._fill(n):
                raise StreamClosedError(f"EOF after {len(self._buf)} of {n} bytes")
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        assert scope.cancelled_caught
        raise StreamTimeout(f"{n} bytes not read within {timeout} s")

    async def write_raw(self, data: bytes, timeout: float = 10.0) -> None:
        """``data`` as is, no length prefix."""
        with trio.move_on_after(timeout) as scope:
            await self._write(data)
        if scope.cancelled_caught:
            raise StreamTimeout(f"write not done within {timeout} s")

    async def write_lp(self, data: bytes, timeout: float = 10.0) -> None:
        with trio.move_on_after(timeout) as scope:
            await self._write(encode_uvarint(len(data)) + data)
        if scope.cancelled_caught:
            raise StreamTimeout(f"write not done within {timeout} s")
