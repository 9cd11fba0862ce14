"""The root error of the Waku v2 node.

``v2`` is a library below the bridge: it imports nothing of the bridge, and the app catches
:class:`V2Error` beside the other packages' roots (bridge/app/cli.py).
"""

__all__ = ["V2DecodeError", "V2Error"]


class V2Error(Exception):
    """Root of the Waku v2 node errors."""


class V2DecodeError(V2Error):
    """Bytes from a peer that do not decode: protobuf codecs, varints, over-long length-prefixed
    frames.  The one base a shell catches to count a malformed input and reset the stream."""
