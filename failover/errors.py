"""The errors of the leader election and fencing.

``failover`` is a library below the bridge: it imports nothing of the bridge.  A bad parameter is
a :class:`FailoverSetupError` naming the parameter of *this* package (``ttl``, ``safety``, ``url``,
``cert_file``, ...); the app maps it to its own configuration key (bridge/app/config.py).
"""

__all__ = ["FailoverError", "FailoverSetupError"]


class FailoverError(Exception):
    """Root of the leader election and fencing errors."""


class FailoverSetupError(FailoverError):
    """An invalid failover parameter, found before anything runs.  ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
