"""Operator commands that talk to running instances over their HTTP endpoint.

``waku-bridge status URL...`` prints role, leader, fencing token, peers and counters of each
instance (``waku-bridge drill URL...``, in drill.py, uses :func:`fetch_status` too).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx

__all__ = ["audit_cell", "fetch_status", "health_cell", "run_status"]


def fetch_status(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """GET ``URL/status``; an unreachable instance is reported, not raised."""
    base = url.rstrip("/")
    if not base.startswith("http"):
        base = "http://" + base
    try:
        r = httpx.get(base + "/status", timeout=timeout)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        data["url"] = base
        return data
    except (httpx.HTTPError, ValueError) as exc:
        return {"url": base, "error": f"{type(exc).__name__}: {exc}"}


def health_cell(health: Any) -> str:
    """``ok``, or the sides without a usable peer for failover.unhealthy_after ("no v1"), and
    ``disk`` when the data dir has refused writes as long ("no v2+disk")."""
    if not isinstance(health, dict):
        return "-"
    bad = [side for side in ("v1", "v2", "disk") if health.get(side) is False]
    return "no " + "+".join(bad) if bad else "ok"


def audit_cell(audit: Any) -> str:
    """A standby's audit of the active: "99.95% of 2000" (met share of checked); "-" if none checked."""
    if not isinstance(audit, dict) or audit.get("ratio") is None:
        return "-"
    checked = sum(audit.get("checked", {}).values())
    return f"{100 * audit['ratio']:.2f}% of {checked}"


def run_status(urls: list[str], *, as_json: bool = False) -> int:
    rows = [fetch_status(u) for u in urls]
    if as_json:
        print(json.dumps(rows, indent=1))
    else:
        cols = ("url", "peer_id", "role", "leader", "fencing_token", "v1_peers", "v2_peers",
                "health", "v1_to_v2", "v2_to_v1", "dropped", "audit", "loop_lag_s")
        table = [cols]
        for r in rows:
            if "error" in r:
                table.append((r["url"], "-", "UNREACHABLE", *["-"] * 7, r["error"][:40], "-", "-"))
                continue
            peers = r.get("peers", {})
            counts = r.get("transfers", {})
            table.append((r["url"], str(r.get("peer_id")), str(r.get("role")), str(r.get("leader")),
                          str(r.get("fencing_token")), str(peers.get("v1")), str(peers.get("v2")),
                          health_cell(r.get("health")),
                          str(counts.get("v1_to_v2")), str(counts.get("v2_to_v1")),
                          str(sum(r.get("dropped", {}).values())), audit_cell(r.get("audit")),
                          str(r.get("event_loop_lag_max_s", "-"))))
        widths = [max(len(str(row[i])) for row in table) for i in range(len(cols))]
        for row in table:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    active = [r for r in rows if r.get("role") == "active"]
    unreachable = [r for r in rows if "error" in r]
    if len(active) != 1:
        print(f"WARNING: {len(active)} active instances (want exactly 1)", file=sys.stderr)
    return 0 if len(active) == 1 and not unreachable else 1
