"""Errors of the Waku v2 node; all derive from the project's root error."""

from bridge.errors import WakuBridgeError

__all__ = ["V2Error"]


class V2Error(WakuBridgeError):
    """Root of the Waku v2 node errors."""
