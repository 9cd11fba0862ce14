"""etcd v3 elector over the JSON gateway (``/v3/...``; etcd 3.4+) with httpx on trio.

Go ``concurrency.Election`` semantics (specs/failover.md §5.2):

1. grant a lease and keep it alive *during* the campaign (every ``renew_interval``, each RPC
   bounded by ``rpc_timeout``, members tried in turn);
2. create ``<prefix>/<lease-hex>`` (value: our identity) in a txn guarded by CreateRevision == 0;
3. the token is that key's create revision (cluster-wide, strictly monotonic, survives restarts);
4. wait until no key of the prefix has a lower create revision, watching only the predecessor;
5. while active, watch our own key for DELETE;
6. local deadline = send time of the last successful keepalive + TTL; step down at deadline - safety
   (the request left before the server refreshed the lease, so this is <= the server's expiry);
7. fenced write = txn guarded by CreateRevision(our key) == token;
8. resign = delete our key and revoke the lease.

A session (lease + key) that ends for any reason other than a watch hiccup of the active is
abandoned (best-effort delete + revoke) and the next campaign uses a new lease.  While etcd is
unreachable nobody is active (a CP choice; the bridge's replay window covers the outage).

Security (:class:`EtcdSecurity`, etcdctl's ``--cacert/--cert/--key/--user``): HTTPS with our CA
and an optional client certificate, and etcd's own authentication.  The gateway takes the token
of ``/v3/auth/authenticate`` in the ``Authorization`` header.  etcd's default *simple* tokens expire
after ``--auth-token-ttl`` (300 s) without an authorised request, and keepalives are not authorised:
an active that only renews holds an expired token when it next writes.  So a refused token means
log in again and retry once; tokens are kept per member (a JWT setup may differ per member).

The pure part (request bodies, response parsing, predecessor choice, deadline) is at the top and
unit-tested without a server.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from failover.elector import ElectorCore, StepDown
from failover.errors import FailoverError, FailoverSetupError
from failover.lease import LeaseTiming

if TYPE_CHECKING:
    from failover.metrics import FailoverMetrics

__all__ = ["EtcdAuthError", "EtcdElector", "EtcdError", "EtcdSecurity", "EtcdUnavailable", "GatewayClient", "KeyValue",
           "WatchEvent", "campaign_txn", "fenced_txn", "parse_endpoints", "parse_keepalive", "parse_kvs",
           "parse_watch_line", "predecessor", "prefix_end"]

log = logging.getLogger(__name__)
# httpx logs every request at INFO: one line per keepalive would drown the bridge's log.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

DEFAULT_PREFIX = "/bridge-election/"


# --- pure: wire format ---


class EtcdError(FailoverError):
    """etcd answered with an error, or with something we cannot parse."""


class EtcdUnavailable(EtcdError):
    """No member answered within the RPC timeout."""


class EtcdAuthError(EtcdError):
    """etcd refused our user name and password (or auth is off while we were told to use it)."""


@dataclass(frozen=True, slots=True)
class EtcdSecurity:
    """TLS and authentication towards etcd.  TLS is on when a CA or a client certificate is given
    (``https://`` to every member); auth is on when ``user`` is given."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, ca_file: str | None, cert_file: str | None, key_file: str | None, user: str | None,
           password: str | None) -> EtcdSecurity:
        """From the configuration's strings (None: not set)."""
        def path(p: str | None) -> Path | None:
            return None if p is None else Path(p)

        return cls(path(ca_file), path(cert_file), path(key_file), user, password)

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    def check(self) -> ssl.SSLContext | None:
        """Raise FailoverSetupError (naming the parameter) for an incomplete or unreadable setup; the
        TLS context to use (None without TLS)."""
        if (self.cert_file is None) != (self.key_file is None):
            raise FailoverSetupError("cert_file", "a client certificate needs both a certificate and a key file")
        if self.user is not None and not self.password:
            raise FailoverSetupError("password", f"etcd user {self.user!r} has no password")
        if self.password and self.user is None:
            raise FailoverSetupError("user", "an etcd password was given without a user")
        return self.ssl_context() if self.tls else None

    def ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=None if self.ca_file is None else str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise FailoverSetupError("ca_file", f"cannot load CA file {self.ca_file}: {exc}") from None
        if self.cert_file is not None and self.key_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise FailoverSetupError("cert_file", f"cannot load client certificate {self.cert_file} "
                                  f"/ key {self.key_file}: {exc}") from None
        return ctx


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EtcdError(f"expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise EtcdError(f"bad base64: {exc}") from None


def _int(v: object, default: int = 0) -> int:
    """proto3 JSON: int64 as a string, absent when zero."""
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise EtcdError(f"expected an integer, got {v!r}")
    try:
        return int(v)
    except ValueError:
        raise EtcdError(f"expected an integer, got {v!r}") from None


def parse_endpoints(spec: str) -> tuple[list[str], str]:
    """``etcd://HOST:PORT[,HOST:PORT...][/NAME]`` -> (["HOST:PORT", ...], NAME or "bridge")."""
    rest = spec.removeprefix("etcd://")
    hosts, _, name = rest.partition("/")
    endpoints = [h.strip() for h in hosts.split(",") if h.strip()]
    if not endpoints:
        raise FailoverSetupError("url", f"no etcd endpoint in {spec!r}")
    for ep in endpoints:
        host, sep, port = ep.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise FailoverSetupError("url", f"expected HOST:PORT, got {ep!r} in {spec!r}")
    name = name.strip("/") or "bridge"
    return endpoints, name


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (increment the last byte < 0xff)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\x00"


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: str  # "PUT" | "DELETE"
    key: bytes
    mod_revision: int


def _kv(d: object) -> KeyValue:
    if not isinstance(d, dict):
        raise EtcdError(f"expected a key-value object, got {type(d).__name__}")
    return KeyValue(unb64(d.get("key")), unb64(d.get("value", "")), _int(d.get("create_revision")),
                    _int(d.get("mod_revision")), _int(d.get("lease")))


def parse_kvs(resp: dict[str, Any]) -> list[KeyValue]:
    kvs = resp.get("kvs", [])
    if not isinstance(kvs, list):
        raise EtcdError("kvs is not a list")
    return [_kv(d) for d in kvs]


def header_revision(resp: dict[str, Any]) -> int:
    h = resp.get("header")
    if not isinstance(h, dict):
        raise EtcdError("response without header")
    return _int(h.get("revision"))


def parse_keepalive(resp: dict[str, Any]) -> int:
    """Remaining TTL from a ``/v3/lease/keepalive`` reply; 0 = the lease is gone."""
    result = resp.get("result", resp)
    if not isinstance(result, dict):
        raise EtcdError("keepalive reply without result")
    return _int(result.get("TTL"))


def parse_watch_line(line: str) -> tuple[str, list[WatchEvent]]:
    """One line of the ``/v3/watch`` stream -> ("created" | "events" | "progress", events).

    Raises EtcdError on an error, a cancel or a compaction: the watcher must start over.
    """
    try:
        msg = json.loads(line)
    except ValueError:
        raise EtcdError(f"watch: not JSON: {line[:80]!r}") from None
    if not isinstance(msg, dict):
        raise EtcdError("watch: not an object")
    if "error" in msg:
        raise EtcdError(f"watch: {msg['error']}")
    result = msg.get("result")
    if not isinstance(result, dict):
        raise EtcdError("watch: no result")
    if result.get("canceled") or _int(result.get("compact_revision")):
        raise EtcdError(f"watch canceled: {result.get('cancel_reason', 'compacted')}")
    if result.get("created"):
        return "created", []
    events = result.get("events")
    if not events:
        return "progress", []
    out = []
    for e in events:
        if not isinstance(e, dict):
            raise EtcdError("watch: bad event")
        kv = e.get("kv", {})
        if not isinstance(kv, dict):
            raise EtcdError("watch: bad event kv")
        out.append(WatchEvent(str(e.get("type", "PUT")), unb64(kv.get("key")), _int(kv.get("mod_revision"))))
    return "events", out


def campaign_txn(key: bytes, value: bytes, lease: int) -> dict[str, Any]:
    """Create ``key`` with our lease only if it does not exist; otherwise read it back."""
    return {"compare": [{"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease)}}],
            "failure": [{"request_range": {"key": b64(key)}}]}


def fenced_txn(key: bytes, token: int, ops: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Apply ``ops`` only while our election key still has create revision ``token``."""
    return {"compare": [{"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": str(token)}],
            "success": list(ops)}


def predecessor(kvs: Sequence[KeyValue], my_rev: int) -> KeyValue | None:
    """The key we wait for: the one with the highest create revision below ours (FIFO queue,
    no thundering herd)."""
    older = [kv for kv in kvs if kv.create_revision < my_rev]
    return max(older, key=lambda kv: kv.create_revision) if older else None


def leader_of(kvs: Sequence[KeyValue]) -> KeyValue | None:
    return min(kvs, key=lambda kv: kv.create_revision) if kvs else None


# --- the gateway client ---


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


class _SessionOver(Exception):
    """Internal: the lease/key session ended; the reason says how to report it."""

    def __init__(self, reason: StepDown, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class EtcdElector(ElectorCore):
    def __init__(self, endpoints: Sequence[str], identity: str, *, name: str = "bridge",
                 timing: LeaseTiming | None = None, prefix: str = DEFAULT_PREFIX,
                 clock: Callable[[], float] = time.monotonic, metrics: FailoverMetrics | None = None,
                 security: EtcdSecurity | None = None) -> None:
        self.timing = timing or LeaseTiming.for_etcd(10)
        self.timing.check_etcd()
        super().__init__(identity, safety=self.timing.safety, clock=clock, metrics=metrics)
        self.name = name
        self.prefix = (prefix.rstrip("/") + "/" + name + "/").encode()
        self.client = GatewayClient(endpoints, self.timing.rpc_timeout, security)
        self.ttl = int(self.timing.ttl)
        self.lease: int | None = None
        self.key: bytes | None = None
        self.lease_sent = -1.0  # send time of the last successful grant/keepalive of our lease
        self._session_scope: trio.CancelScope | None = None
        self._ended: _SessionOver | None = None
        self._hold_until = -1.0

    # --- RPCs ---

    async def _rpc(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        t0 = self.clock()
        try:
            resp = await self.client.post(path, body)
        except EtcdError as exc:
            self._backend_error("unavailable" if isinstance(exc, EtcdUnavailable)
                                else "auth" if isinstance(exc, EtcdAuthError) else "rpc")
            raise
        self._rpc_done(path.rsplit("/", 1)[-1], self.clock() - t0)
        return resp

    async def _range_prefix(self) -> tuple[list[KeyValue], int]:
        resp = await self._rpc("/v3/kv/range", {"key": b64(self.prefix), "range_end": b64(prefix_end(self.prefix)),
                                                "sort_order": "ASCEND", "sort_target": "CREATE"})
        return parse_kvs(resp), header_revision(resp)

    async def fenced(self, token: int, ops: Sequence[dict[str, Any]] = ()) -> bool:
        """Apply txn ``ops`` (gateway JSON request ops) only if ``token`` is still our term's key."""
        if self.key is None:
            return False
        resp = await self._rpc("/v3/kv/txn", fenced_txn(self.key, token, ops))
        return bool(resp.get("succeeded"))

    # --- session pieces ---

    def _end(self, reason: StepDown, detail: str) -> None:
        if self._ended is None:
            self._ended = _SessionOver(reason, detail)
        if self._session_scope is not None:
            self._session_scope.cancel()

    def _on_lapse(self) -> None:
        self._end(StepDown.DEADLINE, "no successful keepalive in time")

    async def _keepalive(self, lease: int) -> None:
        """Keep the lease alive for the whole session; end it when the lease is gone or our own
        deadline for it passes (then the server may already have expired it)."""
        while True:
            if self.clock() >= self.lease_sent + self.ttl - self.safety:
                self._end(StepDown.DEADLINE, "no successful keepalive in time")
                return
            sent = self.clock()
            try:
                ttl = parse_keepalive(await self._rpc("/v3/lease/keepalive", {"ID": str(lease)}))
            except EtcdError as exc:
                log.warning("%s: keepalive failed: %s", self.identity, exc)
                await trio.sleep(min(self.timing.renew_interval, self.timing.rpc_timeout) / 2)
                continue
            if ttl <= 0:
                self._end(StepDown.LOST, "lease expired on the server")
                return
            if ttl < self.ttl:  # the server keeps it for less than we assume: never over-trust it
                self._end(StepDown.ERROR, f"keepalive granted {ttl} s < TTL {self.ttl} s")
                return
            self.lease_sent = max(self.lease_sent, sent)
            if self.fencing_token is not None:
                self._renewed(sent, self.ttl)
            await trio.sleep(self.timing.renew_interval)

    async def _create_key(self, lease: int) -> int:
        key = self.prefix + f"{lease:x}".encode()
        self.key = key
        while True:
            try:
                resp = await self._rpc("/v3/kv/txn", campaign_txn(key, self.identity.encode(), lease))
            except EtcdError:
                await trio.sleep(self.timing.rpc_timeout / 2)
                continue
            if resp.get("succeeded"):
                return header_revision(resp)
            # The key exists: our own earlier attempt succeeded but its reply was lost.
            for r in resp.get("responses", []):
                for kv in parse_kvs(r.get("response_range", {})):
                    if kv.lease == lease:
                        return kv.create_revision
            raise _SessionOver(StepDown.ERROR, "election key exists with a foreign lease")

    async def _watch_for_delete(self, key: bytes, start_revision: int, *, limit: float) -> bool:
        """True once ``key`` is deleted (revision >= start), False when ``limit`` passed quietly.
        Raises EtcdError when the watch breaks."""
        with trio.move_on_after(limit):
            async with self.client.watch(key, start_revision) as lines:
                async for line in lines:
                    if not line.strip():
                        continue
                    _, events = parse_watch_line(line)
                    if any(e.kind == "DELETE" and e.key == key for e in events):
                        return True
                raise EtcdUnavailable("watch stream ended")
        return False

    async def _range_with_own_key(self, my_rev: int, lost: str) -> tuple[list[KeyValue], int]:
        """The prefix's keys and revision (a failed range is retried); ``lost`` ends the session
        when our key of revision ``my_rev`` is no longer among them."""
        assert self.key is not None
        while True:
            try:
                kvs, rev = await self._range_prefix()
            except EtcdError:
                await trio.sleep(self.timing.rpc_timeout / 2)
                continue
            if not any(kv.key == self.key and kv.create_revision == my_rev for kv in kvs):
                raise _SessionOver(StepDown.LOST, lost)
            return kvs, rev

    async def _wait_turn(self, my_rev: int) -> None:
        """Wait until no key in the prefix is older than ours (watch only the predecessor)."""
        while True:
            kvs, rev = await self._range_with_own_key(my_rev, "our election key vanished while waiting")
            first = leader_of(kvs)
            self.leader = first.value.decode(errors="replace") if first is not None else None
            pred = predecessor(kvs, my_rev)
            if pred is None:
                return
            try:
                await self._watch_for_delete(pred.key, rev + 1, limit=self.ttl)
            except EtcdError as exc:
                # A standby's watch dies with its member, or after compaction: start over with a
                # new lease (specs/failover.md §5.2 gotchas).
                raise _SessionOver(StepDown.ERROR, f"standby watch broke: {exc}") from None

    async def _lead(self, my_rev: int) -> None:
        """Active: watch our own key; a watch hiccup is not a loss (the keepalives decide)."""
        while True:
            _, rev = await self._range_with_own_key(my_rev, "our election key was deleted")
            assert self.key is not None
            try:
                if await self._watch_for_delete(self.key, rev + 1, limit=self.ttl):
                    raise _SessionOver(StepDown.LOST, "our election key was deleted")
            except EtcdError as exc:
                log.info("%s: own-key watch broke (%s); re-checking", self.identity, exc)
                await trio.sleep(self.timing.rpc_timeout / 2)

    async def _session(self) -> None:
        sent = self.clock()
        resp = await self._rpc("/v3/lease/grant", {"TTL": str(self.ttl)})
        lease, granted = _int(resp.get("ID")), _int(resp.get("TTL"))
        if lease == 0 or granted < self.ttl:
            raise EtcdError(f"lease grant refused or shortened: {resp}")
        self.lease, self.lease_sent, self._ended = lease, sent, None
        try:
            with trio.CancelScope() as scope:
                self._session_scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keepalive, lease)
                    try:
                        my_rev = await self._create_key(lease)
                        await self._wait_turn(my_rev)
                        if self.clock() >= self.lease_sent + self.ttl - self.safety:
                            raise _SessionOver(StepDown.DEADLINE, "lease lapsed while waiting")
                        self._elected(my_rev, self.lease_sent, self.ttl)
                        await self._lead(my_rev)
                    except _SessionOver as over:  # caught here: a nursery would wrap it in a group
                        self._end(over.reason, over.detail)
                    except EtcdError as exc:
                        self._end(StepDown.ERROR, str(exc))
        finally:
            self._session_scope = None
            # Cancelled from outside (run stopped) without a recorded reason: a graceful stop.
            ended = self._ended or _SessionOver(StepDown.RESIGN, "stopped")
            self._step_down(ended.reason, ended.detail)
            with trio.CancelScope(shield=True):
                await self._abandon()
        log.info("%s: session ended: %s (%s)", self.identity, ended.reason.value, ended.detail)

    async def _abandon(self) -> None:
        """Best effort: delete our key and revoke the lease, so the next campaign (ours or a
        standby's) does not wait for the server to expire them."""
        key, lease, self.key, self.lease = self.key, self.lease, None, None
        try:
            if key is not None:
                await self.client.post("/v3/kv/deleterange", {"key": b64(key)})
            if lease is not None:
                await self.client.post("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            log.info("%s: cleanup of the old session failed (%s); the server expires it", self.identity, exc)

    async def _loop(self) -> None:
        while True:
            if self.clock() < self._hold_until:  # resigned: let a standby have it
                await trio.sleep(self._hold_until - self.clock())
            try:
                await self._session()
            except EtcdError as exc:
                log.warning("%s: campaign failed: %s", self.identity, exc)
                await trio.sleep(self.timing.rpc_timeout / 2)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Campaign, lead, re-campaign until cancelled; then a shielded resign.  Re-runnable."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog, self._on_lapse)
                task_status.started()
                await self._loop()
        finally:
            with trio.CancelScope(shield=True):
                await self.resign()
                await self.client.aclose()

    async def resign(self) -> None:
        """Hand over: step down now, delete our key and revoke the lease, then sit out one TTL."""
        if self.fencing_token is not None:
            self._hold_until = self.clock() + self.ttl
            self._ended = _SessionOver(StepDown.RESIGN, "resigned")
            self._step_down(StepDown.RESIGN)
        with trio.CancelScope(shield=True):
            await self._abandon()
        if self._session_scope is not None:
            self._session_scope.cancel()
