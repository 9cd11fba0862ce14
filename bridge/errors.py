"""The root error of the bridge package (translator, pipeline and app).

Every exception the bridge raises on purpose derives from :class:`WakuBridgeError`.  The lower
packages have their own roots (``v1.errors.V1Error``, ``v2.errors.V2Error``,
``failover.errors.FailoverError``) and never import this module: layers import downwards only
(docs/architecture.md).  The app maps their parameter errors to :class:`ConfigError` with the
YAML key (bridge/app/config.py).
"""

from pathlib import Path

__all__ = ["ConfigError", "DataFileError", "WakuBridgeError"]


class WakuBridgeError(Exception):
    """Root of the bridge's deliberate errors."""


class ConfigError(WakuBridgeError):
    """Invalid configuration. ``key`` names the offending setting (dotted path)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class DataFileError(WakuBridgeError):
    """A state file of the data dir cannot be used (damaged, truncated, not SQLite): the process
    refuses to start (exit 78, bridge/app/cli.py) rather than crash-loop on it."""

    def __init__(self, path: Path, what: str, detail: str) -> None:
        super().__init__(f"{path} ({what}) is not a usable SQLite database: {detail}")
        self.path = path
        self.what = what
        self.detail = detail
