"""The project's single error root.

Every exception our code raises on purpose derives from :class:`WakuBridgeError`, so the
composition root can tell "our component refused something" from "a bug".  This module imports
nothing, which is why ``v1``, ``v2`` and ``failover`` may import it without pulling in the bridge
(the one sanctioned upward import; see docs/decisions/0001-packaging.md).
"""

__all__ = ["ConfigError", "WakuBridgeError"]


class WakuBridgeError(Exception):
    """Root of all deliberate errors in waku-bridge."""


class ConfigError(WakuBridgeError):
    """Invalid configuration. ``key`` names the offending setting (dotted path)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
