"""A small HTTP/1.1 server on trio for nwaku's REST API: one request per connection.

Like bridge/app/http.py (the /metrics server): ``Connection: close``, a deadline on every read
and write, hard caps on head and body size, so a slow or hostile client costs nothing.  Unlike
it, requests carry bodies (POST/DELETE with JSON) and routes have path parameters
(``/relay/v1/messages/{pubsubTopic}``, percent-decoded as nwaku's presto router does).

Every refusal is a 4xx with a plain-text reason; a handler that raises :class:`HttpError` chooses
its 4xx/5xx; any other exception is a bug and answers 500 (logged), never taking the server down.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import trio

__all__ = ["Handler", "HttpError", "Request", "Response", "RestServer", "Route", "json_response", "text_response"]

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024  # a relay message is at most 150 KiB, base64 and JSON fit well below this
IO_TIMEOUT = 10.0
MAX_CONNECTIONS = 64  # requests served at once; further connections wait (accepted) for a slot
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required", 413: "Payload Too Large",
            415: "Unsupported Media Type", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    params: Mapping[str, str]  # path parameters, percent-decoded
    body: bytes
    remote: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names

    def arg(self, name: str) -> str | None:
        """The last value of query parameter ``name`` (None if absent)."""
        v = self.query.get(name)
        return v[-1] if v else None

    def json(self) -> Any:
        if not self.body:
            raise HttpError(400, "request body is empty (expected JSON)")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"request body is not JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json")


def text_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # "/relay/v1/messages/{pubsubTopic}"
    handler: Handler

    def match(self, path: str) -> dict[str, str] | None:
        names: list[str] = []

        def group(m: re.Match[str]) -> str:
            names.append(m.group(1))
            return "([^/]+)"

        pattern = re.sub(r"\\\{(\w+)\\\}", group, re.escape(self.template))
        m = re.fullmatch(pattern, path)
        if m is None:
            return None
        return {n: unquote(v) for n, v in zip(names, m.groups(), strict=True)}


class RestServer:
    def __init__(self, host: str, port: int, routes: list[Route]) -> None:
        self.host = host
        self.port = port
        self.routes = routes
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("REST API listening on http://%s:%d", self.host, self.port)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_one, listeners)
            task_status.started(self.port)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        async with self._limiter:
            await self._serve_limited(stream)

    async def _serve_limited(self, stream: trio.SocketStream) -> None:
        try:
            resp, head_only = await self._respond(stream)
            head = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'OK')}",
                    f"Content-Type: {resp.content_type}", f"Content-Length: {len(resp.body)}", "Connection: close"]
            with trio.move_on_after(IO_TIMEOUT):
                await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + (b"" if head_only else resp.body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _read(self, stream: trio.SocketStream) -> tuple[bytes, bytes] | Response:
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD:
                return text_response("request head too large", 431)
            chunk = await stream.receive_some(65536)
            if not chunk:
                return text_response("incomplete request", 400)
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        if len(head) > MAX_HEAD:  # the whole head may arrive in one read
            return text_response("request head too large", 431)
        return head, body

    async def _respond(self, stream: trio.SocketStream) -> tuple[Response, bool]:
        with trio.move_on_after(IO_TIMEOUT) as scope:
            got = await self._read(stream)
            if isinstance(got, Response):
                return got, False
            head_bytes, body = got
            try:
                lines = head_bytes.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ")
            except ValueError:
                return text_response("bad request line", 400), False
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return text_response("chunked request bodies are not supported; send Content-Length", 411), False
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                return text_response("bad Content-Length", 400), False
            if length < 0:
                return text_response("bad Content-Length", 400), False
            if length > MAX_BODY:
                return text_response(f"request body over {MAX_BODY} bytes", 413), False
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return text_response("incomplete request body", 400), False
                body += chunk
            body = body[:length]
        if scope.cancelled_caught:
            return text_response("timeout reading the request", 408), False
        head_only = method == "HEAD"
        path, _, qs = target.partition("?")
        try:
            query = parse_qs(qs, keep_blank_values=True, strict_parsing=False, errors="strict")
        except (ValueError, UnicodeDecodeError):
            return text_response("bad query string", 400), head_only
        lookup = "GET" if head_only else method
        allowed = []
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            allowed.append(route.method)
            if route.method != lookup:
                continue
            peer = stream.socket.getpeername()
            req = Request(method, path, query, params, body, str(peer[0]) if peer else "", headers)
            try:
                return await route.handler(req), head_only
            except HttpError as exc:
                return text_response(exc.reason, exc.status), head_only
            except Exception:  # a bug must not take the node down
                log.exception("REST handler %s %s failed", method, route.template)
                return text_response("internal error", 500), head_only
        if allowed:
            return text_response(f"method {method} not allowed here (allowed: {', '.join(allowed)})", 405), head_only
        return text_response(f"no route {path}", 404), head_only
