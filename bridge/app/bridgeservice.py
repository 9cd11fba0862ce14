"""``waku-bridge --peer-id A``: v1 node + v2 node + pipeline + HTTP, in one nursery."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.aggregates import AGGREGATES_FILE, AggregatesWriter
from bridge.app.config import AppConfig
from bridge.app.datafiles import DataFile, bridge_data_files, check_data_files
from bridge.app.http import HttpServer, Request, Response, json_response, metrics_route
from bridge.app.looplag import LoopLag
from bridge.app.process import instance_dir, node_key, until_signal
from bridge.app.v1service import v1_node_config
from bridge.app.v2service import rest_server, v2_node_config
from bridge.dedup import DedupStore
from bridge.disk import DiskWatch, Store
from bridge.metrics import BridgeMetrics
from bridge.pipeline import Pipeline, PipelineConfig
from bridge.policy import Policy
from bridge.ports import AlwaysActive
from failover.health import Health, HealthConfig, HealthTracker, ProbeTracker

__all__ = ["BridgeService", "run_bridge"]

log = logging.getLogger(__name__)


class BridgeService:
    def __init__(self, cfg: AppConfig, registry: CollectorRegistry | None = None) -> None:
        from failover.metrics import FailoverMetrics
        from failover.url import parse_failover_url
        from v1.node import V1Node
        from v2.node import V2Node
        from v2.store.client import query_history

        self.cfg = cfg
        self.registry = registry if registry is not None else CollectorRegistry()
        self.started_at = time.time()
        home = instance_dir(cfg)
        policy = Policy.from_lists(cfg.bridge.allow_topics, cfg.bridge.deny_topics)
        # With an allow list the v1 node asks its peers for the allowed topics only (nwaku #1013:
        # the old bridge lost its v1 peers under the load of topics it then dropped).
        self.v1 = V1Node(dataclasses.replace(v1_node_config(cfg, home), topic_interest=policy.v1_interest()),
                         self.registry)
        v2_config = v2_node_config(cfg, node_key(home, cfg.v2.nodekey, "nodekey-v2"), bridge_topics=True)
        self.health_config = HealthConfig.for_unhealthy_after(cfg.failover.unhealthy_after)
        if cfg.failover.backend is not None:
            # Health needs to know a silently cut peer (failover/health.py rule 1): ping them often enough.
            v2_config = dataclasses.replace(v2_config, keepalive_interval=self.health_config.probe_interval,
                                            keepalive_timeout=self.health_config.probe_timeout)
        self.v2 = V2Node(v2_config, self.registry)
        self.home = home
        self.metrics = BridgeMetrics(self.registry, topic_cap=cfg.bridge.topic_cardinality)
        # Writes to the data dir that fail (a full disk): counted, retried with backoff, and part of
        # the health that moves the lease (bridge/disk.py).
        self.disk = DiskWatch(on_error=lambda store: self.metrics.disk_errors.labels(store.value).inc())
        self._archive_failed = 0.0  # the store's failed opens and inserts, as last counted
        self.dedup = DedupStore(home / "bridge.sqlite3", window=cfg.bridge.dedup_window,
                                capacity=cfg.bridge.dedup_capacity, disk=self.disk)
        self.loop_lag = LoopLag(self.registry)
        # Hourly topic x origin counts for `waku-bridge report`, flushed every 10 s and on shutdown.
        self.aggregates = AggregatesWriter(home / AGGREGATES_FILE,
                                           on_flush=lambda r: self.metrics.aggregates_flushes.labels(r).inc(),
                                           disk=self.disk)
        self.metrics.add_listener(self.aggregates.record)
        assert cfg.peer_id is not None
        self.failover_metrics = FailoverMetrics(self.registry, cfg.peer_id)
        # The elector keeps role, fencing token, leader changes, step-downs and backend errors.
        self.elector = parse_failover_url(cfg.failover.backend, identity=cfg.peer_id, data_dir=Path(cfg.data_dir),
                                          ttl=cfg.failover.ttl, renew_interval=cfg.failover.renew_interval,
                                          rpc_timeout=cfg.failover.rpc_timeout, safety=cfg.failover.safety,
                                          metrics=self.failover_metrics,
                                          etcd_security=cfg.failover.etcd_security())
        self.gate: Any = self.elector if self.elector is not None else AlwaysActive()
        # Health-aware leadership (failover/health.py): the elector asks for our health on every
        # renewal or poll and publishes it beside the lease.
        self.health = HealthTracker(self.health_config, time.monotonic())
        # With failover, a v2 peer counts while its keep-alive pings are answered (see above).
        self.v2_probe = ProbeTracker(self.health_config) if cfg.failover.backend is not None else None
        if self.elector is not None:
            self.elector.set_health_source(self._observe_health, self.health_config)
        self.pipeline = Pipeline(
            self.v1, self.v2, self.dedup, self.metrics,
            PipelineConfig(cluster_id=cfg.v2.cluster_id, num_shards=max(1, cfg.v2.num_shards_in_network),
                           pubsub_topic=cfg.bridge.pubsub_topic, ttl=cfg.bridge.ttl, max_skew=cfg.bridge.max_skew,
                           pow_target=cfg.v1.pow, pow_budget_s=cfg.bridge.pow_budget,
                           test_only_drop_every=test_only_drop_every()),
            policy=policy, gate=self.gate,
            # the sink history at takeover: our archive (if up over the window) and every store peer
            history=lambda req, deadline: query_history(self.v2.host, self.v2.store_peers(), req, deadline,
                                                        local=self.v2.store, local_since=self.v2.started_at),
            auditing=self._other_is_active)
        self.http_port = cfg.metrics.port
        # nwaku's REST API on the bridge's v2 node (--rest), built now so its caches see every message.
        self.rest = rest_server(cfg, self.v2) if cfg.v2.rest else None
        self.rest_port: int | None = None
        self._elector_scope: trio.CancelScope | None = None
        self._resigning = False
        self._stepped_down = trio.Event()

    def _observe_health(self) -> Health:
        now = time.monotonic()
        v2_usable = len(self.v2.peers())
        if self.v2_probe is not None:
            answered = self.registry.get_sample_value("waku_node_keep_alive_pings_total", {"result": "ok"}) or 0
            v2_usable = self.v2_probe.observe(v2_usable, int(answered), now)
        return self.health.observe(len(self.v1.peers()), v2_usable, now, disk_ok=self.disk.ok)

    def data_files(self) -> list[DataFile]:
        """The SQLite files this instance opens, for the start-up check (bridge/app/datafiles.py)."""
        from failover.sqlite_backend import SqliteElector

        archive = None
        if self.cfg.v2.store:
            scheme, sep, rest = self.v2.config.store_db_url().partition("://")
            if sep and scheme.lower() == "sqlite" and rest not in ("", "memory", ":memory:"):
                archive = Path(rest)
        lease = Path(self.elector.path) if isinstance(self.elector, SqliteElector) else None
        return bridge_data_files(self.home, lease=lease, archive=archive)

    def _observe_archive(self, now: float) -> None:
        """The store archive's writes, from the store service (it relays a message whose insert
        failed, counted as ``waku_archive_errors_total{type="insert_failure"}``; an open the disk
        refused is ``open_failure``, and retried): each failure counts, its last outcome is the state."""
        store = self.v2.store
        if store is None:
            return
        failed = sum(self.registry.get_sample_value("waku_archive_errors_total", {"type": t}) or 0.0
                     for t in ("insert_failure", "open_failure"))
        new, self._archive_failed = int(failed - self._archive_failed), failed
        for _ in range(new):
            if self.disk.failed(Store.ARCHIVE, "store archive open or insert failed (see the store's log)", now):
                log.error("store archive: inserts fail; messages are still relayed but not archived "
                          "(docs/operations.md#disk-errors)")
        if store.archive_ok and self.disk.succeeded(Store.ARCHIVE) is not None:
            log.warning("store archive: inserts succeed again")

    async def _disk_loop(self) -> None:
        """Every second: retry the dedup keys a full disk refused (after the backoff), follow the
        archive, export the disk state."""
        while True:
            await trio.sleep(1)
            now = time.time()
            self.dedup.save_unsaved()
            self._observe_archive(now)
            self.metrics.dedup_unsaved.set(self.dedup.unsaved)
            self.metrics.disk_ok.set(int(self.disk.ok))

    def _other_is_active(self) -> bool:
        """Another instance holds the lease: our audit checks its work (bridge/audit.py)."""
        return self.elector is not None and self.elector.leader not in (None, self.cfg.peer_id)

    def audit_status(self) -> dict[str, Any]:
        a = self.pipeline.audit
        ratio = a.ratio()
        return {"auditing": self.pipeline.auditing(), "checked": dict(a.checked), "missed": dict(a.missed),
                "ratio": None if ratio is None else round(ratio, 6), "open": len(a),
                "recent_missed": [{"key": m.key.hex(), "direction": m.direction} for m in a.recent]}

    def status(self) -> dict[str, Any]:
        now = time.time()
        counts = {d: int(self.registry.get_sample_value("waku_bridge_transfers_total", {"type": d}) or 0)
                  for d in ("v1_to_v2", "v2_to_v1")}
        dropped = {}
        for metric in self.registry.collect():
            if metric.name == "waku_bridge_dropped":
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        dropped[s.labels["type"]] = int(s.value)
        return {
            "peer_id": self.cfg.peer_id,
            "role": "active" if self.gate.is_active() else "standby",
            "leader": self.elector.leader if self.elector is not None else self.cfg.peer_id,
            "fencing_token": self.elector.fencing_token if self.elector is not None else None,
            "peers": {"v1": len(self.v1.peers()), "v2": len(self.v2.peers())},
            "health": self._observe_health().as_dict(),
            "transfers": counts,
            "dropped": dropped,
            "rates": self.metrics.rates(now),
            "v2_share": self.metrics.shares(now),
            "aggregates": {"file": str(self.aggregates.store.path), "last_flush": self.aggregates.last_flush,
                           "unflushed_rows": len(self.aggregates.acc)},
            "dedup_size": len(self.dedup),
            "dedup_unsaved": self.dedup.unsaved,
            "disk": self.disk.as_dict(now),
            "disk_ok": self.disk.ok,
            "pending": len(self.pipeline.pending),
            "audit": self.audit_status(),
            "v1": {"enode": self.v1.enode},
            "v2": {"peer_id": self.v2.peer_id, "listen_addrs": self.v2.listen_addrs,
                   # what a client needs to find our v1->v2 output (waku-bridge drill's canaries)
                   "cluster_id": self.cfg.v2.cluster_id, "num_shards": max(1, self.cfg.v2.num_shards_in_network),
                   "pubsub_topic": self.cfg.bridge.pubsub_topic,
                   "peer_manager": self.v2.peer_status()},
            "uptime_s": round(now - self.started_at, 1),
            "event_loop_lag_max_s": round(self.loop_lag.worst, 3),
        }

    async def _status(self, _: Request) -> Response:
        return json_response(self.status())

    async def _health(self, _: Request) -> Response:
        return json_response({"status": "ok"})

    async def _ready(self, _: Request) -> Response:
        ok = bool(self.v1.peers()) and bool(self.v2.peers())
        return json_response({"ready": ok, "v1_peers": len(self.v1.peers()), "v2_peers": len(self.v2.peers())},
                             200 if ok else 503)

    async def _follow_leadership(self) -> None:
        """On election: bridge what is pending (zero-loss takeover: grace, then sink history
        checks; bridge/pipeline.py), then go live."""
        assert self.elector is not None
        leading = False
        while True:
            changed = self.elector.changed
            if self.elector.is_leader() and not leading:
                t0 = time.monotonic()
                n = await self.pipeline.take_over()
                self.failover_metrics.takeover.observe(time.monotonic() - t0)
                log.info("%s active: %d pending messages bridged on takeover", self.cfg.peer_id, n)
                leading = True  # the pipeline's release loop bridges what the echo grace holds
            elif leading and not self.elector.is_leader():
                leading = False
            with trio.move_on_after(0.5):  # also re-check: leadership can lapse without an event
                await changed.wait()

    async def _run_elector(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The elector, restartable: ``/admin/resign`` cancels it (its shielded cleanup resigns),
        then it sits out one TTL so a standby takes the lease (a switchover, not a re-election
        of ourselves), then campaigns again as a standby."""
        assert self.elector is not None
        task_status.started()
        while True:
            self._elector_scope = trio.CancelScope()
            with self._elector_scope:
                await self.elector.run()
            self._elector_scope = None
            self._stepped_down.set()  # the shielded resign inside run() has finished
            await trio.sleep(self.cfg.failover.ttl)
            self._resigning = False

    async def _resign(self, req: Request) -> Response:
        """``POST /admin/resign``: hand leadership to a standby (``waku-bridge drill``).  Allowed
        from loopback, or with the ``X-Admin-Token`` header equal to $WAKU_BRIDGE_ADMIN_TOKEN."""
        token = os.environ.get("WAKU_BRIDGE_ADMIN_TOKEN")
        try:
            loopback = ipaddress.ip_address(req.remote).is_loopback
        except ValueError:
            loopback = False
        if not (loopback or (token and req.headers.get("x-admin-token") == token)):
            return json_response({"resigned": False, "reason": "forbidden: loopback or X-Admin-Token only"}, 403)
        if self.elector is None or self._elector_scope is None or not self.elector.is_leader():
            return json_response({"resigned": False, "reason": "not the active instance"}, 409)
        old = self.elector.fencing_token
        self._resigning = True
        self._stepped_down = trio.Event()
        self._elector_scope.cancel()
        with trio.move_on_after(5):
            await self._stepped_down.wait()
        log.info("%s resigned on request (token %s)", self.cfg.peer_id, old)
        return json_response({"resigned": True, "peer_id": self.cfg.peer_id, "fencing_token": old,
                              "hold_off_s": self.cfg.failover.ttl})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        loaded = await self.dedup.open()
        log.info("bridge %s: %d dedup keys loaded", self.cfg.peer_id, loaded)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.v1.run)
                await nursery.start(self.v2.run)
                await nursery.start(self.aggregates.run)
                await nursery.start(self.loop_lag.run)
                await nursery.start(self.pipeline.run)
                nursery.start_soon(self._disk_loop)
                if self.elector is not None:
                    await nursery.start(self._run_elector)
                    nursery.start_soon(self._follow_leadership)
                else:
                    self.failover_metrics.role.set(1)
                if self.cfg.metrics.enabled:
                    http = HttpServer(self.cfg.metrics.address, self.cfg.metrics.port, {
                        "/metrics": metrics_route(self.registry), "/health": self._health,
                        "/ready": self._ready, "/status": self._status}, {"/admin/resign": self._resign})
                    self.http_port = await nursery.start(http.run)
                if self.rest is not None:
                    self.rest_port = await nursery.start(self.rest.run)
                log.info("bridge %s running: v1 %s | v2 %s", self.cfg.peer_id, self.v1.enode,
                         " ".join(self.v2.listen_addrs))
                task_status.started()
        finally:
            await self.dedup.aclose()


TEST_ONLY_DROP_ENV = "WAKU_BRIDGE_TEST_ONLY_DROP_EVERY"


def test_only_drop_every() -> int:
    """The TEST-ONLY fault hook (tests/drills/test_audit.py): ``$WAKU_BRIDGE_TEST_ONLY_DROP_EVERY=N``
    makes this instance, while active, silently skip every Nth publish per direction, so a test
    can show the standby's audit catching exactly those.  Not a configuration key; loudly logged."""
    raw = os.environ.get(TEST_ONLY_DROP_ENV, "")
    if not raw:
        return 0
    n = int(raw)
    log.warning("%s=%d: TEST-ONLY fault hook ON, every %dth publish is dropped; never set this in production",
                TEST_ONLY_DROP_ENV, n, n)
    return n


async def run_bridge(cfg: AppConfig) -> None:
    service = BridgeService(cfg)
    # Before anything opens them: a damaged file is one clear line and exit 78, never a traceback.
    await trio.to_thread.run_sync(lambda: check_data_files(service.data_files(),
                                                           quarantine=cfg.bridge.quarantine_corrupt))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_signal, nursery.cancel_scope)
        await nursery.start(service.run)
        print(json_line({"v1": service.v1.enode, "v2": service.v2.listen_addrs, "http": service.http_port,
                         "rest": service.rest_port}),
              flush=True)


def json_line(obj: object) -> str:
    import json

    return json.dumps(obj)
