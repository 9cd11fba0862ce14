"""Loopback networking helpers for tests (every test socket lives on 127.0.0.1)."""

from __future__ import annotations

from bridge.app.ports import LOOPBACK, free_ports

__all__ = ["LOOPBACK", "free_port", "free_ports"]


def free_port() -> int:
    return free_ports(1)[0]
