"""Errors of the leader election and fencing; all derive from the project's root error."""

from bridge.errors import WakuBridgeError

__all__ = ["FailoverError"]


class FailoverError(WakuBridgeError):
    """Root of the leader election and fencing errors."""
