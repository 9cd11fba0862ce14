"""The failover backend named by a URL: ``none``, ``sqlite:[PATH]`` or ``etcd://HOST:PORT[,...][/NAME]``.

The top of the failover package: it alone knows every backend, so the backends and the elector core
(failover/elector.py) never import each other upwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from failover.elector import Elector
from failover.errors import FailoverSetupError
from failover.lease import timing_for

if TYPE_CHECKING:  # the backends are imported when named (an sqlite: lease needs no httpx)
    from failover.etcd.security import EtcdSecurity
    from failover.metrics import FailoverMetrics

__all__ = ["parse_failover_url"]


def parse_failover_url(spec: str | None, *, identity: str, data_dir: Path | str, ttl: float,
                       renew_interval: float | None = None, rpc_timeout: float | None = None,
                       safety: float | None = None, metrics: FailoverMetrics | None = None,
                       etcd_security: EtcdSecurity | None = None) -> Elector | None:
    """Build the elector named by the backend URL ``spec`` (raises FailoverSetupError on a bad URL or timing).

    ``none`` -> None (always active); None or ``sqlite:`` -> ``<data dir>/failover.sqlite3``
    (shared by every instance using that data dir); ``sqlite:PATH``; ``etcd://HOST:PORT[,HOST:PORT...]``
    with an optional ``/NAME`` election name (default ``bridge``) and ``etcd_security`` (TLS, auth).
    Timings left None derive from the TTL per backend (``LeaseTiming.for_ttl`` / ``for_etcd``); the
    startup invariant renew + 2 x rpc_timeout + safety < TTL is checked here, before anything runs.
    """
    if spec == "none":
        return None
    timing = timing_for(spec, ttl, renew_interval=renew_interval, rpc_timeout=rpc_timeout, safety=safety)
    if spec is None or spec.startswith("sqlite:"):
        from failover.sqlite_backend import SqliteElector

        path = Path(data_dir) / "failover.sqlite3" if spec in (None, "sqlite:") else Path(spec.removeprefix("sqlite:"))
        return SqliteElector(path, identity, timing=timing, metrics=metrics)
    if spec.startswith("etcd://"):
        from failover.etcd.elector import EtcdElector
        from failover.etcd.wire import parse_endpoints

        endpoints, name = parse_endpoints(spec)
        return EtcdElector(endpoints, identity, name=name, timing=timing, metrics=metrics, security=etcd_security)
    raise FailoverSetupError("url", f"unknown failover backend {spec!r}")
