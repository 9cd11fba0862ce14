"""A small HTTP/1.1 server on trio for /metrics, /health, /ready, /status and nwaku's REST subset.

GET endpoints, plus the few POST routes registered as such (``post_routes``: admin actions such
as ``/admin/resign``, which check the caller themselves); one request per connection
(``Connection: close``), a deadline on every read and write, and a hard cap on request size, so a
slow or hostile client costs nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HttpServer", "Request", "Response", "json_response", "metrics_route"]

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
IO_TIMEOUT = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 409: "Conflict", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    remote: str = ""  # the client's IP address (admin routes allow loopback only, or a token)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n",
                    "application/json")


def metrics_route(registry: CollectorRegistry) -> Handler:
    async def handler(_: Request) -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    return handler


class HttpServer:
    def __init__(self, host: str, port: int, routes: Mapping[str, Handler],
                 post_routes: Mapping[str, Handler] | None = None) -> None:
        self.host = host
        self.port = port
        self.routes = dict(routes)
        self.post_routes = dict(post_routes or {})

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("http server listening on http://%s:%d", self.host, self.port)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_one, listeners)
            task_status.started(self.port)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        try:
            resp = await self._respond(stream)
            head = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'OK')}",
                    f"Content-Type: {resp.content_type}", f"Content-Length: {len(resp.body)}",
                    "Connection: close", *(f"{k}: {v}" for k, v in resp.headers.items())]
            with trio.move_on_after(IO_TIMEOUT):
                await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + resp.body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _respond(self, stream: trio.SocketStream) -> Response:
        buf = b""
        with trio.move_on_after(IO_TIMEOUT) as scope:
            while b"\r\n\r\n" not in buf:
                if len(buf) > MAX_REQUEST:
                    return Response(431, b"request too large\n")
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return Response(400, b"incomplete request\n")
                buf += chunk
        if scope.cancelled_caught:
            return Response(408, b"timeout\n")
        try:
            head = buf.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
            method, target, _version = head[0].split(" ")
        except (UnicodeDecodeError, ValueError):
            return Response(400, b"bad request line\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        path, _, query = target.partition("?")
        handler: Handler | None
        if method == "POST" and path in self.post_routes:
            handler = self.post_routes[path]  # admin actions carry no body: nothing more to read
        elif method not in ("GET", "HEAD"):
            return Response(405, b"only GET\n", headers={"Allow": "GET"})
        else:
            handler = self.routes.get(path)
        if handler is None:
            return Response(404, b"not found\n")
        try:
            peer = stream.socket.getpeername()
            resp = await handler(Request(method, path, query, str(peer[0]) if peer else "", headers))
        except Exception:  # a bug in a status handler must not take the process down
            log.exception("http handler for %s failed", path)
            return Response(500, b"internal error\n")
        if method == "HEAD":
            return Response(resp.status, b"", resp.content_type, resp.headers)
        return resp
