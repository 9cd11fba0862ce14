"""Store v3 and archive metrics, with nwaku's names (waku-v2.md §18).

prometheus_client exports counters with the ``_total`` suffix, as nim-metrics does, so the
dashboards' ``waku_store_queries_total`` works unchanged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LegacyStoreMetrics", "StoreMetrics"]

_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queries = Counter("waku_store_queries", "Store v3 queries answered", registry=registry)
        self.errors = Counter("waku_store_errors", "Store v3 requests refused or failed, by type", ["type"],
                              registry=registry)
        self.archive_messages = Gauge("waku_archive_messages", "Messages in the archive", ["type"],
                                      registry=registry)
        self.archive_errors = Counter("waku_archive_errors", "Messages not archived and archive failures, by type",
                                      ["type"], registry=registry)
        self.archive_duplicates = Counter("waku_archive_duplicates", "Messages already archived (same hash)",
                                          registry=registry)
        self.insert_duration = Histogram("waku_archive_insert_duration_seconds", "Archive insert time",
                                         buckets=_DB_BUCKETS, registry=registry)
        self.query_duration = Histogram("waku_archive_query_duration_seconds", "Archive query time",
                                        buckets=_DB_BUCKETS, registry=registry)
        self.retention_deleted = Counter("waku_archive_retention_deleted", "Messages removed by the retention policy",
                                         registry=registry)
        # Ours (nwaku logs these): a PostgreSQL archive that cannot reach its server, or loses it.
        self.db_connection_failures = Counter("waku_archive_db_connection_failures",
                                              "Failed attempts to (re)connect to the archive's database server",
                                              registry=registry)


class LegacyStoreMetrics:
    """nwaku's legacy store names (waku_store_legacy/protocol_metrics.nim)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queries = Counter("waku_legacy_store_queries", "Legacy store queries answered", registry=registry)
        self.errors = Counter("waku_legacy_store_errors", "Legacy store requests refused or failed, by type",
                              ["type"], registry=registry)
