"""The etcd v3 JSON gateway client: POST to one member at a time (round robin on failure), etcd auth
tokens per member (log in again and retry once on a refused token), streaming watches."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from failover.errors import FailoverSetupError
from failover.etcd.security import EtcdSecurity
from failover.etcd.wire import EtcdAuthError, EtcdError, EtcdUnavailable, b64

__all__ = ["GatewayClient"]

# httpx logs every request at INFO: one line per keepalive would drown the bridge's log.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _token_rejected(status: int, data: object) -> bool:
    """The member does not know our token (or we sent none): authenticate again, then retry once."""
    msg = str(data.get("error", "")) if isinstance(data, dict) else ""
    return status == 401 or "invalid auth token" in msg or "user name is empty" in msg


class GatewayClient:
    """POST JSON to one member at a time; on failure move to the next member (round robin)."""

    def __init__(self, endpoints: Sequence[str], rpc_timeout: float, security: EtcdSecurity | None = None) -> None:
        if not endpoints:
            raise FailoverSetupError("url", "no etcd endpoints")
        self.endpoints = list(endpoints)
        self.rpc_timeout = rpc_timeout
        self.security = security or EtcdSecurity()
        self._ssl = self.security.check()
        self._tokens: dict[str, str] = {}  # member base URL -> its auth token
        self._current = 0
        self._http: httpx.AsyncClient | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self._ssl is not None else 'http'}://{self.endpoints[self._current]}"

    def rotate(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.rpc_timeout), trust_env=False,
                                           verify=self._ssl if self._ssl is not None else True)
        return self._http

    async def _auth_headers(self, base: str) -> dict[str, str]:
        """``Authorization`` for ``base`` (authenticating first if we hold no token for it)."""
        user = self.security.user
        if user is None:
            return {}
        token = self._tokens.get(base)
        if token is None:
            resp = await self._client().post(base + "/v3/auth/authenticate",
                                             json={"name": user, "password": self.security.password or ""})
            data = resp.json()
            if resp.status_code != 200 or not isinstance(data, dict) or not data.get("token"):
                msg = data.get("error", data) if isinstance(data, dict) else data
                raise EtcdAuthError(f"{base}: authentication as {user!r} refused: HTTP {resp.status_code}: {msg}")
            token = self._tokens[base] = str(data["token"])
        return {"Authorization": token}

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            with trio.CancelScope(shield=True):
                await http.aclose()

    async def post(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        base = self.base

        async def send() -> tuple[httpx.Response, Any]:
            resp = await self._client().post(base + path, json=body, headers=await self._auth_headers(base))
            return resp, resp.json()

        try:
            with trio.fail_after(timeout or self.rpc_timeout):
                resp, data = await send()
                if self.security.user is not None and _token_rejected(resp.status_code, data):
                    self._tokens.pop(base, None)
                    resp, data = await send()
        except (httpx.HTTPError, trio.TooSlowError, ValueError, OSError) as exc:
            if self.base == base:
                self.rotate()
            raise EtcdUnavailable(f"{base}{path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200 or not isinstance(data, dict) or "error" in data:
            # e.g. 503 "etcdserver: no leader" / "leader changed": try the next member next time.
            if resp.status_code >= 500 and self.base == base:
                self.rotate()
            msg = data.get("error", data) if isinstance(data, dict) else data
            raise EtcdError(f"{base}{path}: HTTP {resp.status_code}: {msg}")
        return data

    @asynccontextmanager
    async def watch(self, key: bytes, start_revision: int) -> AsyncIterator[AsyncIterator[str]]:
        """A ``/v3/watch`` stream on the current member; yields its JSON lines."""
        base = self.base
        body = {"create_request": {"key": b64(key), "start_revision": str(start_revision)}}
        try:
            with trio.fail_after(self.rpc_timeout):
                headers = await self._auth_headers(base)
                cm = self._client().stream("POST", base + "/v3/watch", json=body, headers=headers,
                                           timeout=httpx.Timeout(self.rpc_timeout, read=None))
                resp = await cm.__aenter__()
        except (httpx.HTTPError, trio.TooSlowError, OSError) as exc:
            if self.base == base:
                self.rotate()
            raise EtcdUnavailable(f"{base}/v3/watch: {type(exc).__name__}: {exc}") from None
        try:
            if resp.status_code != 200:
                raise EtcdError(f"{base}/v3/watch: HTTP {resp.status_code}")
            yield resp.aiter_lines()
        except (httpx.HTTPError, OSError) as exc:
            if self.base == base:
                self.rotate()
            raise EtcdUnavailable(f"{base}/v3/watch: {type(exc).__name__}: {exc}") from None
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.rpc_timeout):
                await cm.__aexit__(None, None, None)


# --- the elector ---
