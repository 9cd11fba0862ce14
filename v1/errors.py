"""The root error of the Waku v1 layer (RLPx transport and the waku/1 subprotocol).

``v1`` is a library below the bridge: it imports nothing of the bridge, and the app catches
:class:`V1Error` beside the other packages' roots (bridge/app/cli.py).
"""

__all__ = ["V1DecodeError", "V1Error"]


class V1Error(Exception):
    """Root of the Waku v1 layer (RLPx transport and the waku/1 subprotocol) errors."""


class V1DecodeError(V1Error):
    """Bytes from a peer that do not decode: RLPx handshake and frames, waku/1 status, messages and
    envelopes.  The one base a shell catches to count a malformed input and drop the peer."""
