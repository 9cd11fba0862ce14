"""Errors of the Waku v1 layer (RLPx transport and the waku/1 subprotocol); all derive from the project's root error."""

from bridge.errors import WakuBridgeError

__all__ = ["V1Error"]


class V1Error(WakuBridgeError):
    """Root of the Waku v1 layer (RLPx transport and the waku/1 subprotocol) errors."""
