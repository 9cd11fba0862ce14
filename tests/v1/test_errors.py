"""One decode-error base for the v1 side: a shell catches V1DecodeError for any malformed input."""

from __future__ import annotations

from v1.errors import V1DecodeError, V1Error
from v1.rlpx.frame import FrameError, FrameTooLarge, MacMismatch
from v1.rlpx.handshake import HandshakeError
from v1.waku.envelope import EnvelopeError
from v1.waku.messages import MessagesError
from v1.waku.status import StatusError


def test_every_v1_decode_error_shares_one_base() -> None:
    for cls in (FrameError, FrameTooLarge, MacMismatch, HandshakeError, EnvelopeError, MessagesError, StatusError):
        assert issubclass(cls, V1DecodeError) and issubclass(cls, V1Error), cls
