"""The etcd backend of the elector: campaign, keepalive, watch, resign (failover/etcd/__init__.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from failover.elector import ElectorCore, StepDown
from failover.etcd.gateway import GatewayClient
from failover.etcd.security import EtcdSecurity
from failover.etcd.wire import (
    DEFAULT_PREFIX,
    EtcdAuthError,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    b64,
    campaign_txn,
    fenced_txn,
    header_revision,
    json_int,
    leader_of,
    parse_keepalive,
    parse_kvs,
    parse_watch_line,
    predecessor,
    prefix_end,
)
from failover.health import Health, PeerHealth, Verdict
from failover.lease import LeaseTiming

if TYPE_CHECKING:
    from failover.metrics import FailoverMetrics

__all__ = ["EtcdElector"]

log = logging.getLogger(__name__)


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
        # Health beside the lease (failover/health.py rule 2): one key per instance on its session
        # lease, so a report disappears with its writer.  Outside the election's range (which must
        # hold only candidates) but under the same top prefix, so the etcd role that the bridge
        # needs stays "read/write on /bridge-election/" (docs/operations.md).
        self.health_prefix = (prefix.rstrip("/") + "/.health/" + name + "/").encode()
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

    # --- health (failover/health.py) ---

    async def _publish_health(self, lease: int) -> None:
        """Write our health key on the session lease and read the others' (a failure is only
        counted: the last reports stand until the next round)."""
        me = self.health_prefix + self.identity.encode()
        value = json.dumps(self.own_health.as_dict(), sort_keys=True).encode()
        await self._rpc("/v3/kv/put", {"key": b64(me), "value": b64(value), "lease": str(lease)})
        resp = await self._rpc("/v3/kv/range", {"key": b64(self.health_prefix),
                                                "range_end": b64(prefix_end(self.health_prefix))})
        others: dict[str, PeerHealth] = {}
        for kv in parse_kvs(resp):
            identity = kv.key[len(self.health_prefix):].decode(errors="replace")
            if identity == self.identity:
                continue
            try:
                d = json.loads(kv.value)
                h = Health(bool(d["v1"]), bool(d["v2"]), bool(d.get("disk", True)))  # no disk: older release
            except (ValueError, KeyError, TypeError):
                continue  # not a report of ours: ignored
            others[identity] = PeerHealth(identity, h, 0.0)  # present = fresh: it lives on a live lease
        self.others_health = others

    async def _health_loop(self, lease: int) -> None:
        """Every renew interval: our verdict, our report, the others'; rule 3 (resign) here,
        rule 4 (withhold) in :meth:`_session` / :meth:`_wait_turn`."""
        if self.health_source is None:
            return
        while True:
            v = self.health_verdict(self.ttl)
            try:
                await self._publish_health(lease)
                if self.fencing_token is None and self.key is None:  # withholding: still know the leader
                    first = leader_of((await self._range_prefix())[0])
                    self.leader = first.value.decode(errors="replace") if first is not None else None
            except EtcdError as exc:
                log.info("%s: health report failed: %s", self.identity, exc)
            if v is Verdict.RESIGN and self.fencing_token is not None:
                log.warning("%s resigns: unhealthy %s and a healthy standby exists", self.identity,
                            self.own_health.as_dict())
                await self.resign(StepDown.UNHEALTHY)
                return
            await trio.sleep(self.timing.renew_interval)

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
        while True:
            key = self._own_key()
            try:
                kvs, rev = await self._range_prefix()
            except EtcdError:
                await trio.sleep(self.timing.rpc_timeout / 2)
                continue
            if not any(kv.key == key and kv.create_revision == my_rev for kv in kvs):
                raise _SessionOver(StepDown.LOST, lost)
            return kvs, rev

    def _own_key(self) -> bytes:
        """Our election key; a resign (health's, or ``/admin/resign``) abandons it while this
        session's tasks still run, and then the session is over, not the process."""
        if self.key is None:
            raise _SessionOver(StepDown.RESIGN, "resigned")
        return self.key

    async def _wait_turn(self, my_rev: int) -> None:
        """Wait until no key in the prefix is older than ours (watch only the predecessor)."""
        while True:
            kvs, rev = await self._range_with_own_key(my_rev, "our election key vanished while waiting")
            first = leader_of(kvs)
            self.leader = first.value.decode(errors="replace") if first is not None else None
            pred = predecessor(kvs, my_rev)
            if self.withheld:  # rule 4: unhealthy while a healthy instance exists: leave the line
                raise _SessionOver(StepDown.RESIGN, "unhealthy: not campaigning")
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
            try:
                if await self._watch_for_delete(self._own_key(), rev + 1, limit=self.ttl):
                    raise _SessionOver(StepDown.LOST, "our election key was deleted")
            except EtcdError as exc:
                log.info("%s: own-key watch broke (%s); re-checking", self.identity, exc)
                await trio.sleep(self.timing.rpc_timeout / 2)

    async def _session(self) -> None:
        sent = self.clock()
        resp = await self._rpc("/v3/lease/grant", {"TTL": str(self.ttl)})
        lease, granted = json_int(resp.get("ID")), json_int(resp.get("TTL"))
        if lease == 0 or granted < self.ttl:
            raise EtcdError(f"lease grant refused or shortened: {resp}")
        self.lease, self.lease_sent, self._ended = lease, sent, None
        try:
            with trio.CancelScope() as scope:
                self._session_scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keepalive, lease)
                    nursery.start_soon(self._health_loop, lease)
                    try:
                        while self.withheld:  # rule 4: publish health, campaign only when it clears
                            await self.withheld_changed.wait()
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

    async def resign(self, reason: StepDown = StepDown.RESIGN) -> None:
        """Hand over: step down now, delete our key and revoke the lease, then sit out one TTL."""
        if self.fencing_token is not None:
            self._hold_until = self.clock() + self.ttl
            self._ended = _SessionOver(reason, "resigned")
            self._step_down(reason)
        if self._session_scope is not None:  # first: the session's tasks stop using the key
            self._session_scope.cancel()
        with trio.CancelScope(shield=True):
            await self._abandon()
