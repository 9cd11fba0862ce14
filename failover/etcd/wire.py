"""etcd v3 JSON gateway wire format (pure): errors, request bodies, response parsing, and the
election rules on a key listing (Go ``concurrency.Election``; see failover/etcd/__init__.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from failover.errors import FailoverError, FailoverSetupError

__all__ = ["DEFAULT_PREFIX", "EtcdAuthError", "EtcdError", "EtcdUnavailable", "KeyValue", "WatchEvent", "b64",
           "campaign_txn", "fenced_txn", "header_revision", "json_int", "leader_of", "parse_endpoints",
           "parse_keepalive", "parse_kvs", "parse_watch_line", "predecessor", "prefix_end", "unb64"]

DEFAULT_PREFIX = "/bridge-election/"


class EtcdError(FailoverError):
    """etcd answered with an error, or with something we cannot parse."""


class EtcdUnavailable(EtcdError):
    """No member answered within the RPC timeout."""


class EtcdAuthError(EtcdError):
    """etcd refused our user name and password (or auth is off while we were told to use it)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EtcdError(f"expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise EtcdError(f"bad base64: {exc}") from None


def json_int(v: object, default: int = 0) -> int:
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
    return KeyValue(unb64(d.get("key")), unb64(d.get("value", "")), json_int(d.get("create_revision")),
                    json_int(d.get("mod_revision")), json_int(d.get("lease")))


def parse_kvs(resp: dict[str, Any]) -> list[KeyValue]:
    kvs = resp.get("kvs", [])
    if not isinstance(kvs, list):
        raise EtcdError("kvs is not a list")
    return [_kv(d) for d in kvs]


def header_revision(resp: dict[str, Any]) -> int:
    h = resp.get("header")
    if not isinstance(h, dict):
        raise EtcdError("response without header")
    return json_int(h.get("revision"))


def parse_keepalive(resp: dict[str, Any]) -> int:
    """Remaining TTL from a ``/v3/lease/keepalive`` reply; 0 = the lease is gone."""
    result = resp.get("result", resp)
    if not isinstance(result, dict):
        raise EtcdError("keepalive reply without result")
    return json_int(result.get("TTL"))


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
    if result.get("canceled") or json_int(result.get("compact_revision")):
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
        out.append(WatchEvent(str(e.get("type", "PUT")), unb64(kv.get("key")), json_int(kv.get("mod_revision"))))
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
