"""Free loopback ports for the sandbox (``demo``), the benchmarks and the tests."""

from __future__ import annotations

import socket

__all__ = ["LOOPBACK", "free_ports"]

LOOPBACK = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
