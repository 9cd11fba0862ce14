"""Real v2 hosts on 127.0.0.1 for tests: fresh key, free ports, optional services mounted."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Protocol

import trio

from tests.helpers.net import LOOPBACK, free_ports
from v2.host import Host, HostConfig, StreamHandler
from v2.stream import Stream

__all__ = ["Service", "mount", "new_host", "start_host"]


class Service(Protocol):
    """What a v2 protocol service exposes to be mounted (FilterService, StoreService, ...)."""

    @property
    def protocol_ids(self) -> tuple[str, ...]: ...

    async def handle(self, stream: Stream) -> None: ...


def new_host(*, ws: bool = False) -> Host:
    """A host with a random key on free loopback ports (a websocket listener too with ``ws``); not started."""
    tcp, wsp = free_ports(2)
    return Host(HostConfig(secrets.token_bytes(32), LOOPBACK, tcp, wsp if ws else None))


def mount(host: Host, *services: Service) -> None:
    """Serve each service's ``handle`` on each of its ``protocol_ids``."""
    for service in services:
        for pid in service.protocol_ids:
            host.set_stream_handler(pid, service.handle)


async def start_host(nursery: trio.Nursery, *, ws: bool = False, services: Iterable[Service] = (),
                     handlers: Mapping[str, StreamHandler] | None = None) -> Host:
    """:func:`new_host`, serving each service on its ``protocol_ids`` and ``handlers``, started in ``nursery``."""
    h = new_host(ws=ws)
    mount(h, *services)
    for pid, handler in (handlers or {}).items():
        h.set_stream_handler(pid, handler)
    await nursery.start(h.run)
    return h
