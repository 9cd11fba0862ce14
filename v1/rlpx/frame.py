"""RLPx framing: AES-256-CTR with one continuous keystream per direction, Keccak MACs (rlpx.md §4).

Sans-I/O: :meth:`FrameCodec.encode` turns frame data into wire bytes; :meth:`FrameCodec.feed`
takes wire bytes and returns complete frames' data.  MACs are checked before anything is
decrypted, and a frame larger than ``max_frame_size`` is refused from its header alone.
"""

from __future__ import annotations

from typing import Any

from Crypto.Cipher import AES

from v1.errors import V1DecodeError
from v1.rlpx.handshake import Secrets

__all__ = ["DEFAULT_MAX_FRAME", "FrameCodec", "FrameError", "FrameTooLarge", "MacMismatch"]

DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # geth's maxUint24 cap on frame_size
_HEADER_DATA = b"\xc2\x80\x80"  # rlp([0, 0]); receivers ignore it


class FrameError(V1DecodeError):
    """The frame stream is corrupt; the session cannot continue."""


class MacMismatch(FrameError):
    pass


class FrameTooLarge(FrameError):
    pass


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class FrameCodec:
    def __init__(self, secrets: Secrets, *, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
        self._enc = AES.new(secrets.aes_secret, AES.MODE_CTR, nonce=b"", initial_value=b"\0" * 16)
        self._dec = AES.new(secrets.aes_secret, AES.MODE_CTR, nonce=b"", initial_value=b"\0" * 16)
        self._mac_cipher = AES.new(secrets.mac_secret, AES.MODE_ECB)
        self._egress: Any = secrets.egress_mac
        self._ingress: Any = secrets.ingress_mac
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pending_size: int | None = None  # body size of a frame whose header was accepted

    def _header_mac(self, mac: Any, header_ct: bytes) -> bytes:
        seed = _xor(self._mac_cipher.encrypt(mac.digest()[:16]), header_ct)
        mac.update(seed)
        return bytes(mac.digest()[:16])

    def _frame_mac(self, mac: Any, frame_ct: bytes) -> bytes:
        mac.update(frame_ct)
        d = mac.digest()[:16]
        mac.update(_xor(self._mac_cipher.encrypt(d), d))
        return bytes(mac.digest()[:16])

    def encode(self, frame_data: bytes) -> bytes:
        size = len(frame_data)
        if size > self.max_frame_size:
            raise FrameTooLarge(f"frame of {size} bytes exceeds {self.max_frame_size}")
        header = size.to_bytes(3, "big") + _HEADER_DATA
        header_ct = self._enc.encrypt(header + b"\0" * (16 - len(header)))
        padded = frame_data + b"\0" * (-size % 16)
        frame_ct = self._enc.encrypt(padded)
        header_mac = self._header_mac(self._egress, header_ct)
        return header_ct + header_mac + frame_ct + self._frame_mac(self._egress, frame_ct)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume wire bytes; return the data of every frame completed by them."""
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._pending_size is None:
                if len(self._buf) < 32:
                    return out
                header_ct, mac = bytes(self._buf[:16]), bytes(self._buf[16:32])
                if self._header_mac(self._ingress, header_ct) != mac:
                    raise MacMismatch("header MAC mismatch")
                header = self._dec.decrypt(header_ct)
                size = int.from_bytes(header[:3], "big")
                if size > self.max_frame_size:
                    raise FrameTooLarge(f"peer announced a frame of {size} bytes (max {self.max_frame_size})")
                del self._buf[:32]
                self._pending_size = size
            size = self._pending_size
            padded = size + (-size % 16)
            if len(self._buf) < padded + 16:
                return out
            frame_ct, mac = bytes(self._buf[:padded]), bytes(self._buf[padded:padded + 16])
            if self._frame_mac(self._ingress, frame_ct) != mac:
                raise MacMismatch("frame MAC mismatch")
            out.append(self._dec.decrypt(frame_ct)[:size])
            del self._buf[:padded + 16]
            self._pending_size = None
