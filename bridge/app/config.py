"""Configuration: defaults < YAML file < ``WAKU_BRIDGE_*`` environment < command-line flags.

Every setting is declared once in :data:`SETTINGS` with its dotted key (the YAML path), type,
default, environment variable and flag names (nwaku's names where nwaku had one).  Loading collects
*every* error before reporting, each with its key, so an operator fixes a bad file in one pass.
The result is an immutable :class:`AppConfig` tree.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bridge.errors import ConfigError, WakuBridgeError
from failover.errors import FailoverSetupError
from v1.waku.ratelimit import DEFAULT_BYTES_PER_S, DEFAULT_PACKETS_PER_S
from v2.ratelimit import DEFAULT_RELAY_PEER_BYTES_PER_S, DEFAULT_RELAY_PEER_MESSAGES_PER_S

if TYPE_CHECKING:
    from failover.etcd.security import EtcdSecurity

__all__ = [
    "SETTINGS",
    "AppConfig",
    "BridgeSection",
    "ConfigErrors",
    "FailoverSection",
    "LogSection",
    "MetricsSection",
    "Setting",
    "V1Section",
    "V2Section",
    "add_flags",
    "failover_config_error",
    "load_config",
]

ENV_PREFIX = "WAKU_BRIDGE_"


class ConfigErrors(WakuBridgeError):
    """All configuration problems found in one load, each a :class:`ConfigError`."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


# failover's own parameter names (failover/errors.py) -> the configuration keys that set them
_FAILOVER_KEYS = {
    "url": "failover.backend", "ttl": "failover.ttl", "renew_interval": "failover.renew_interval",
    "rpc_timeout": "failover.rpc_timeout", "safety": "failover.safety", "ca_file": "failover.etcd_cacert",
    "cert_file": "failover.etcd_cert", "key_file": "failover.etcd_key", "user": "failover.etcd_user",
    "password": "failover.etcd_password",
}
_FAILOVER_HINTS = {
    "password": " (failover.etcd_password, $WAKU_BRIDGE_FAILOVER_ETCD_PASSWORD or etcd_password_file)",
}


def failover_config_error(exc: FailoverSetupError) -> ConfigError:
    """The failover package's parameter error, reported against the YAML key that set the parameter."""
    key = _FAILOVER_KEYS.get(exc.param, f"failover.{exc.param}")
    return ConfigError(key, exc.message + _FAILOVER_HINTS.get(exc.param, ""))


# --- value parsers: each takes the raw value (YAML scalar or string) and returns the typed value ---


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {v!r}")


def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError(f"expected an integer, got {v!r}")
        try:
            n = int(str(v).strip(), 0) if isinstance(v, str) else int(v)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {v!r}") from None
        if isinstance(v, float) and v != n:
            raise ValueError(f"expected an integer, got {v!r}")
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {n}")
        return n

    return parse


def _float_min(lo: float, *, strict: bool = False) -> Callable[[Any], float]:
    def parse(v: Any) -> float:
        if isinstance(v, bool):
            raise ValueError(f"expected a number, got {v!r}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {v!r}") from None
        if math.isnan(f) or math.isinf(f) or f < lo or (strict and f == lo):
            raise ValueError(f"must be a finite number {'>' if strict else '>='} {lo}, got {v!r}")
        return f

    return parse


def _str(v: Any) -> str:
    if isinstance(v, (dict, list)):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return str(v)


def _opt_str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return _str(v)


def _readable_file(v: Any) -> str | None:
    if v is None or v == "":
        return None
    path = _str(v).strip()
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"cannot read the file {path!r}")
    return path


_HEX32 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def _nodekey(v: Any) -> str | None:
    if v is None or v == "":
        return None
    s = _str(v).strip()
    if not _HEX32.match(s):
        raise ValueError("expected 64 hex characters (a secp256k1 private key)")
    return s.removeprefix("0x").lower()


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def parse(v: Any) -> tuple[Any, ...]:
        if v is None or v == "":
            return ()
        if isinstance(v, str):
            v = [p for p in (x.strip() for x in v.split(",")) if p]
        if not isinstance(v, (list, tuple)):
            v = [v]
        return tuple(item(x) for x in v)

    return parse


def _enode(v: Any) -> str:
    from v1.rlpx.enode import Enode, EnodeError  # the v1 node's own parser (IPv6 hosts in brackets)

    s = _str(v).strip()
    try:
        Enode.parse(s)
    except EnodeError:
        raise ValueError(f"not an enode URL (enode://<128 hex>@host:port): {s!r}") from None
    return s


def _multiaddr(v: Any) -> str:
    s = _str(v).strip()
    if not s.startswith("/") or "/p2p/" not in s:
        raise ValueError(f"not a multiaddr with /p2p/<peer id>: {s!r}")
    return s


def _enr(v: Any) -> str:
    from v2.enr.enr import Enr, EnrError  # the v2 node's own parser

    s = _str(v).strip()
    try:
        Enr.from_text(s)
    except EnrError as exc:
        raise ValueError(f"not a valid enr:... record ({exc})") from None
    return s


def _pubsub_topic(v: Any) -> str | None:
    from v2.core.topics import PubsubTopic, TopicError  # the v2 node's own parser

    if v is None or v == "":
        return None
    s = _str(v).strip()
    try:
        PubsubTopic.parse(s)
    except TopicError:
        raise ValueError(f"expected /waku/2/rs/<cluster 0..65535>/<shard 0..1023>, got {s!r}") from None
    return s


def _retention(v: Any) -> str:
    # Exactly what the archive will parse (time:, capacity:, size:, none, ";"-joined).
    from v2.store.common import StoreConfigError, parse_retention_policy

    s = _str(v).strip()
    try:
        parse_retention_policy(s)
    except StoreConfigError as exc:
        raise ValueError(exc.message) from None
    return s


def _relay_service_ratio(v: Any) -> str:
    from v2.peers.policy import parse_relay_service_ratio  # what the peer manager will parse

    s = _str(v).strip()
    parse_relay_service_ratio(s)  # ValueError with the reason
    return s


def _rate_limit(v: Any) -> str:
    from v2.ratelimit import parse_rate_limit  # what the node will parse (nwaku's --rate-limit syntax)

    s = _str(v).strip()
    parse_rate_limit(s)  # RateLimitConfigError (a ValueError) with the reason
    return s


def _db_url(v: Any) -> str:
    from v2.store.common import StoreConfigError, parse_db_url  # what the archive will parse

    s = _str(v).strip()
    try:
        parse_db_url(s)
    except StoreConfigError as exc:
        raise ValueError(exc.message) from None
    return s


def _msg_size(v: Any) -> int:
    """nwaku's ``--max-msg-size``: bytes, or a number with KiB/MiB/KB/MB (default 150KiB)."""
    s = _str(v).strip()
    m = re.fullmatch(r"(\d+)\s*(|B|KiB|MiB|KB|MB)", s, re.IGNORECASE)
    if not m:
        raise ValueError(f"expected a size like 153600, 150KiB or 1MiB, got {v!r}")
    unit = m.group(2).lower()
    n = int(m.group(1)) * {"": 1, "b": 1, "kib": 1024, "mib": 1 << 20, "kb": 1000, "mb": 1_000_000}[unit]
    if not 1024 <= n <= 16 << 20:
        raise ValueError(f"max message size must be between 1KiB and 16MiB, got {v!r}")
    return n


def _nat(v: Any) -> str | None:
    """nwaku's ``--nat``: ``any``/``none`` (announce the listen address) or ``extip:<IPv4>``."""
    if v is None or v == "":
        return None
    s = _str(v).strip()
    if s.lower() in ("any", "none", "upnp", "pmp"):
        return None
    m = re.fullmatch(r"extip:(\d{1,3}(?:\.\d{1,3}){3})", s, re.IGNORECASE)
    if not m or any(int(x) > 255 for x in m.group(1).split(".")):
        raise ValueError(f"expected any, none or extip:<IPv4>, got {v!r}")
    return m.group(1)


def _log_level(v: Any) -> str:
    s = _str(v).strip().upper()
    if s == "WARN":
        s = "WARNING"
    if s not in ("TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "CRITICAL"):
        raise ValueError(f"unknown log level {v!r}")
    return {"TRACE": "DEBUG", "NOTICE": "INFO", "FATAL": "CRITICAL"}.get(s, s)


def _log_format(v: Any) -> str:
    s = _str(v).strip().lower()
    if s not in ("text", "json"):
        raise ValueError(f"expected text or json, got {v!r}")
    return s


def _failover(v: Any) -> str | None:
    if v is None or v == "":
        return None
    s = _str(v).strip()
    if s.startswith("etcd://"):
        from failover.etcd.wire import parse_endpoints  # the elector's own parser

        try:
            parse_endpoints(s)
        except FailoverSetupError as exc:
            raise ValueError(exc.message) from None
        return s
    if s == "none" or s.startswith("sqlite:"):
        return s
    raise ValueError(f"expected sqlite:PATH, etcd://HOST:PORT[,HOST:PORT...] or none, got {s!r}")


def _failover_seconds(v: Any) -> float | None:
    """Optional failover timing override (None: derived from the TTL for the backend)."""
    if v is None or v == "":
        return None
    return _float_min(0.0, strict=True)(v)


def _v1_topic(v: Any) -> str:
    s = _str(v).strip().lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{8}", s):
        raise ValueError(f"expected a 4-byte v1 topic as 8 hex digits, got {v!r}")
    return s


def _content_topic_or_v1(v: Any) -> str:
    s = _str(v).strip()
    if s.startswith("/"):
        return s
    return _v1_topic(s)


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration setting.

    ``key`` is the dotted YAML path; ``flags`` maps a command group ("bridge", "v1-node",
    "v2-node", "common") to its flag names; ``env`` defaults to WAKU_BRIDGE_<KEY with _>.
    """

    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    repeatable: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()

    @property
    def dest(self) -> str:
        return self.key.replace(".", "__")


B, V1N, V2N, ALL = "bridge", "v1-node", "v2-node", "common"


def _f(*names: str, groups: Iterable[str] = (B,)) -> dict[str, tuple[str, ...]]:
    return {g: names for g in groups}


SETTINGS: tuple[Setting, ...] = (
    # --- process ---
    Setting("peer_id", _opt_str, None, "identity of this bridge instance (A, B, ...)", _f("--peer-id")),
    Setting("data_dir", _str, "./data", "directory for keys, dedup state, aggregates, store",
            _f("--data-dir", groups=(B, V1N, V2N))),
    Setting("log.level", _log_level, "INFO", "TRACE|DEBUG|INFO|WARNING|ERROR",
            _f("--log-level", groups=(B, V1N, V2N))),
    Setting("log.format", _log_format, "text", "text or json",
            _f("--log-format", groups=(B, V1N, V2N))),
    Setting("listen_address", _str, "0.0.0.0", "listen IP for both networks",
            _f("--listen-address", groups=(B, V1N, V2N))),
    Setting("metrics.enabled", _bool, True, "serve Prometheus /metrics and health endpoints",
            _f("--metrics-server", groups=(B, V1N, V2N))),
    Setting("metrics.address", _str, "127.0.0.1", "metrics/HTTP listen address",
            _f("--metrics-server-address", groups=(B, V1N, V2N))),
    Setting("metrics.port", _int_in(0, 65535), 8008, "metrics/HTTP port",
            _f("--metrics-server-port", groups=(B, V1N, V2N))),
    # --- Waku v1 ---
    Setting("v1.port", _int_in(0, 65535), 30303, "devp2p TCP port",
            _f("--devp2p-tcp-port", groups=(B, V1N))),
    Setting("v1.nodekey", _nodekey, None, "v1 secp256k1 node key (hex); default: persisted in data dir",
            _f("--nodekey-v1", groups=(B, V1N))),
    Setting("v1.staticnodes", _list_of(_enode), (), "static v1 peer (enode URL), repeatable",
            _f("--staticnode-v1", groups=(B, V1N)), repeatable=True),
    Setting("v1.pow", _float_min(0.0), 0.002,
            "v1 PoW: advertised and enforced requirement, and the target our posts are mined for",
            _f("--waku-v1-pow", groups=(B, V1N))),
    Setting("v1.max_peers", _int_in(1, 1000), 50, "maximum v1 peers", _f("--max-peers-v1", groups=(B, V1N))),
    Setting("v1.target_peers", _int_in(0, 1000), 4, "v1 peers to keep dialled from the static list",
            _f("--target-peers-v1", groups=(B, V1N))),
    Setting("v1.future_allowance", _float_min(0.0), 2.0,
            "seconds an envelope may be created in the future (nim: 2, status-go: 10)",
            _f("--waku-v1-future-allowance", groups=(B, V1N))),
    # Protective by default: status-go's own per-peer limits (v1/waku/ratelimit.py DEFAULT_*).
    Setting("v1.rate_limit_packets", _int_in(0, 1_000_000), DEFAULT_PACKETS_PER_S,
            "per-peer packets/s; over it for 5 packets within a second disconnects (0 = unlimited)",
            _f("--waku-v1-rate-limit-packets", groups=(B, V1N))),
    Setting("v1.rate_limit_bytes", _int_in(0, 1 << 40), DEFAULT_BYTES_PER_S, "per-peer bytes/s (0 = unlimited)",
            _f("--waku-v1-rate-limit-bytes", groups=(B, V1N))),
    Setting("v1.pool_capacity", _int_in(256, 10_000_000), 32_768,
            "envelopes the v1 pool holds (each lives until it expires): >= peak envelopes/s x TTL, "
            "counting both the v1 traffic and the bridge's own posts", _f("--waku-v1-pool-capacity", groups=(B, V1N))),
    # --- Waku v2 ---
    Setting("v2.tcp_port", _int_in(0, 65535), 60000, "libp2p TCP port",
            {B: ("--libp2p-tcp-port", "--tcp-port"), V2N: ("--tcp-port",)}),
    Setting("v2.websocket_support", _bool, True, "listen on WebSocket too (js-waku needs it)",
            _f("--websocket-support", groups=(B, V2N))),
    Setting("v2.websocket_port", _int_in(0, 65535), 8000, "libp2p WebSocket port",
            _f("--websocket-port", groups=(B, V2N))),
    Setting("v2.websocket_secure_support", _bool, False,
            "serve secure WebSocket (wss, for browsers) instead of ws on the WebSocket port",
            _f("--websocket-secure-support", groups=(B, V2N))),
    Setting("v2.websocket_secure_key_path", _readable_file, None, "private key (PEM) of the wss certificate",
            _f("--websocket-secure-key-path", groups=(B, V2N))),
    Setting("v2.websocket_secure_cert_path", _readable_file, None,
            "wss certificate chain (PEM, leaf first, e.g. fullchain.pem)",
            _f("--websocket-secure-cert-path", groups=(B, V2N))),
    Setting("v2.nodekey", _nodekey, None, "v2 secp256k1 node key (hex); default: persisted in data dir",
            {B: ("--nodekey-v2",), V2N: ("--nodekey",)}),
    Setting("v2.staticnodes", _list_of(_multiaddr), (), "static v2 peer (multiaddr), repeatable",
            {B: ("--staticnode-v2",), V2N: ("--staticnode",)}, repeatable=True),
    Setting("v2.cluster_id", _int_in(0, 65535), 0, "Waku network cluster id",
            _f("--cluster-id", groups=(B, V2N))),
    Setting("v2.shards", _list_of(_int_in(0, 1023)), (), "shard to relay, repeatable (default: all)",
            _f("--shard", groups=(B, V2N)), repeatable=True),
    Setting("v2.num_shards_in_network", _int_in(0, 1024), 1, "autosharding shard count (0 = static)",
            _f("--num-shards-in-network", groups=(B, V2N))),
    Setting("v2.relay", _bool, True, "mount relay", _f("--relay", groups=(B, V2N))),
    Setting("v2.store", _bool, False, "mount the store v3 service and archive", _f("--store", groups=(B, V2N))),
    Setting("v2.store_message_db_url", _db_url, "sqlite://store.sqlite3",
            "archive: sqlite://<path> (relative paths are under the data dir) or "
            "postgres://user:password@host:port/db",
            _f("--store-message-db-url", groups=(B, V2N))),
    Setting("v2.store_message_retention_policy", _retention, "time:172800",
            "time:<s> | capacity:<n> | size:<n>MB/GB | none, ';'-joined", _f("--store-message-retention-policy",
                                                                             groups=(B, V2N))),
    Setting("v2.filter", _bool, False, "mount the filter v2 service", _f("--filter", groups=(B, V2N))),
    Setting("v2.filter_subscription_timeout", _int_in(1, 604_800), 300,
            "s a filter subscription lives without a ping (nwaku: 300)",
            _f("--filter-subscription-timeout", groups=(B, V2N))),
    Setting("v2.filter_max_peers_to_serve", _int_in(1, 1_000_000), 1000,
            "filter subscribers served at once (nwaku: 1000)", _f("--filter-max-peers-to-serve", groups=(B, V2N))),
    Setting("v2.filter_max_criteria", _int_in(1, 1_000_000), 1000,
            "(pubsub topic, content topic) criteria per filter subscriber (nwaku: 1000)",
            _f("--filter-max-criteria", groups=(B, V2N))),
    Setting("v2.lightpush", _bool, False, "mount lightpush v3 + v2 services", _f("--lightpush", groups=(B, V2N))),
    Setting("v2.peer_exchange", _bool, True, "mount peer exchange", _f("--peer-exchange", groups=(B, V2N))),
    Setting("v2.dns_discovery_url", _opt_str, None, "enrtree:// URL to discover peers from",
            _f("--dns-discovery-url", groups=(B, V2N))),
    Setting("v2.discv5_discovery", _bool, False, "discover peers with discv5 (protocol id d5waku)",
            _f("--discv5-discovery", groups=(B, V2N))),
    Setting("v2.discv5_udp_port", _int_in(0, 65535), 9000, "discv5 UDP port",
            _f("--discv5-udp-port", groups=(B, V2N))),
    Setting("v2.discv5_bootstrap_nodes", _list_of(_enr), (), "discv5 bootstrap node (enr:...), repeatable",
            _f("--discv5-bootstrap-node", groups=(B, V2N)), repeatable=True),
    Setting("v2.discv5_enr_auto_update", _bool, False, "update our ENR's address from what peers see",
            _f("--discv5-enr-auto-update", groups=(B, V2N))),
    Setting("v2.max_connections", _int_in(1, 10_000), 50, "maximum libp2p connections",
            _f("--max-connections", groups=(B, V2N))),
    Setting("v2.relay_service_ratio", _relay_service_ratio, "60:40",
            "relay:service share of --max-connections (nwaku); a third of the relay share is dialled out",
            _f("--relay-service-ratio", groups=(B, V2N))),
    Setting("v2.ip_colocation_limit", _int_in(0, 10_000), 5, "peers allowed from one IP (nwaku: 5; 0 = no limit)",
            _f("--ip-colocation-limit", groups=(B, V2N))),
    # Protective by default (v2/ratelimit.py says why each default is what it is).
    Setting("v2.rate_limits", _list_of(_rate_limit), (),
            "nwaku's [store|storev2|storev3|lightpush|px|filter:]<volume>/<period><ms|s|m|h>, repeatable; merged "
            "over the defaults (store 100/1s, lightpush 50/1s, px 5/1s, filter 100/1s per peer); 0/1s = off",
            _f("--rate-limit", groups=(B, V2N)), repeatable=True),
    Setting("v2.relay_rate_limit_messages", _int_in(0, 10_000_000), DEFAULT_RELAY_PEER_MESSAGES_PER_S,
            "relay messages/s one peer may send us (0 = unlimited)",
            _f("--relay-rate-limit-messages", groups=(B, V2N))),
    Setting("v2.relay_rate_limit_bytes", _int_in(0, 1 << 40), DEFAULT_RELAY_PEER_BYTES_PER_S,
            "relay bytes/s one peer may send us (0 = unlimited)", _f("--relay-rate-limit-bytes", groups=(B, V2N))),
    Setting("v2.max_msg_size", _msg_size, 153_600, "largest WakuMessage relayed or accepted (nwaku: 150KiB)",
            _f("--max-msg-size", groups=(B, V2N))),
    Setting("v2.nat", _nat, None, "address announced in the ENR: any | none | extip:<IPv4>",
            _f("--nat", groups=(B, V2N))),
    Setting("v2.rest", _bool, False, "serve nwaku's REST API (v2/rest/openapi.yaml)",
            _f("--rest", groups=(B, V2N))),
    Setting("v2.rest_address", _str, "127.0.0.1", "REST listen address", _f("--rest-address", groups=(B, V2N))),
    Setting("v2.rest_port", _int_in(0, 65535), 8645, "REST port", _f("--rest-port", groups=(B, V2N))),
    # --- bridge ---
    Setting("bridge.pubsub_topic", _pubsub_topic, None,
            "v2 pubsub topic to bridge on (default: autoshard of each content topic)",
            _f("--bridge-pubsub-topic")),
    Setting("bridge.ttl", _int_in(1, 3600), 10, "TTL (s) of envelopes bridged v2->v1", _f("--bridge-ttl")),
    Setting("bridge.max_skew", _float_min(0.0), 20.0,
            "accepted |timestamp - now| (s) for messages bridged v2->v1", _f("--bridge-max-skew")),
    Setting("bridge.pow_budget", _float_min(0.0, strict=True), 2.0,
            "seconds of mining allowed per v2->v1 message before it is a counted drop", _f("--bridge-pow-budget")),
    Setting("bridge.allow_topics", _list_of(_content_topic_or_v1), (),
            "bridge only these v1 topics / content topics (repeatable)", _f("--bridge-allow-topic"), repeatable=True),
    Setting("bridge.deny_topics", _list_of(_content_topic_or_v1), (),
            "never bridge these v1 topics / content topics (repeatable)", _f("--bridge-deny-topic"), repeatable=True),
    Setting("bridge.topic_cardinality", _int_in(1, 10_000), 50,
            "content topics tracked individually in metrics (the rest are 'other')", _f("--bridge-topic-cardinality")),
    Setting("bridge.dedup_window", _float_min(1.0), 600.0, "dedup window (s), >= max TTL + skew",
            _f("--bridge-dedup-window")),
    Setting("bridge.dedup_capacity", _int_in(1000, 100_000_000), 1_000_000, "dedup entries kept",
            _f("--bridge-dedup-capacity")),
    Setting("bridge.quarantine_corrupt", _bool, False,
            "a damaged dedup ledger, aggregates or store file at start: move it aside (<name>.corrupt-<time>) and "
            "start fresh, instead of exiting 78 (never the failover lease; docs/operations.md#disk-errors)",
            _f("--quarantine-corrupt")),
    # --- failover ---
    Setting("failover.backend", _failover, None,
            "sqlite:PATH (default: a file in the data dir) | etcd://HOST:PORT[,HOST:PORT...] | none",
            _f("--failover")),
    Setting("failover.ttl", _float_min(1.0), 10.0, "leader lease TTL (s); whole seconds for etcd",
            _f("--failover-ttl")),
    Setting("failover.renew_interval", _failover_seconds, None,
            "lease renew / keepalive interval (s); default TTL/5 (sqlite), TTL/4 (etcd)", _f("--failover-renew")),
    Setting("failover.rpc_timeout", _failover_seconds, None,
            "timeout of one backend operation (s); default min(1, TTL/10) (sqlite), TTL/6 (etcd)",
            _f("--failover-rpc-timeout")),
    Setting("failover.safety", _failover_seconds, None,
            "step down this long before the lease could expire (s); default max(0.2, TTL/10) (sqlite), "
            "TTL/6 (etcd). Startup checks renew + 2 x rpc_timeout + safety < TTL", _f("--failover-safety")),
    Setting("failover.unhealthy_after", _float_min(1.0), 30.0,
            "a side with no usable peer this long (s) is unhealthy: the active resigns to a healthy standby "
            "(after leading as long), an unhealthy standby does not campaign (docs/failover.md, Health)",
            _f("--failover-unhealthy-after")),
    # etcd security, as etcdctl names it (--cacert, --cert, --key, --user)
    Setting("failover.etcd_cacert", _readable_file, None, "CA bundle (PEM) that signed the etcd members' "
            "certificates; turns on https", _f("--failover-etcd-cacert")),
    Setting("failover.etcd_cert", _readable_file, None, "client certificate (PEM), for etcd's --client-cert-auth",
            _f("--failover-etcd-cert")),
    Setting("failover.etcd_key", _readable_file, None, "private key (PEM) of failover.etcd_cert",
            _f("--failover-etcd-key")),
    Setting("failover.etcd_user", _opt_str, None, "etcd user (etcd authentication)", _f("--failover-etcd-user")),
    # No flag for the password itself: a command line is visible to every user of the host.
    Setting("failover.etcd_password", _opt_str, None,
            "etcd password: YAML or $WAKU_BRIDGE_FAILOVER_ETCD_PASSWORD only (or etcd_password_file)"),
    Setting("failover.etcd_password_file", _readable_file, None,
            "file holding the etcd password (e.g. a systemd credential)", _f("--failover-etcd-password-file")),
)

_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str
    format: str


@dataclass(frozen=True, slots=True)
class MetricsSection:
    enabled: bool
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class V1Section:
    port: int
    nodekey: str | None
    staticnodes: tuple[str, ...]
    pow: float
    max_peers: int
    target_peers: int
    future_allowance: float
    rate_limit_packets: int
    rate_limit_bytes: int
    pool_capacity: int = 32_768


@dataclass(frozen=True, slots=True)
class V2Section:
    tcp_port: int
    websocket_support: bool
    websocket_port: int
    websocket_secure_support: bool
    websocket_secure_key_path: str | None
    websocket_secure_cert_path: str | None
    nodekey: str | None
    staticnodes: tuple[str, ...]
    cluster_id: int
    shards: tuple[int, ...]
    num_shards_in_network: int
    relay: bool
    store: bool
    store_message_db_url: str
    store_message_retention_policy: str
    filter: bool
    filter_subscription_timeout: int
    filter_max_peers_to_serve: int
    filter_max_criteria: int
    lightpush: bool
    peer_exchange: bool
    dns_discovery_url: str | None
    discv5_discovery: bool
    discv5_udp_port: int
    discv5_bootstrap_nodes: tuple[str, ...]
    discv5_enr_auto_update: bool
    max_connections: int
    relay_service_ratio: str
    ip_colocation_limit: int
    max_msg_size: int
    rate_limits: tuple[str, ...]
    relay_rate_limit_messages: int
    relay_rate_limit_bytes: int
    nat: str | None
    rest: bool
    rest_address: str
    rest_port: int


@dataclass(frozen=True, slots=True)
class BridgeSection:
    pubsub_topic: str | None
    ttl: int
    max_skew: float
    pow_budget: float
    allow_topics: tuple[str, ...]
    deny_topics: tuple[str, ...]
    topic_cardinality: int
    dedup_window: float
    dedup_capacity: int
    quarantine_corrupt: bool = False


@dataclass(frozen=True, slots=True)
class FailoverSection:
    backend: str | None
    ttl: float
    renew_interval: float | None = None
    rpc_timeout: float | None = None
    safety: float | None = None
    etcd_cacert: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)  # read from etcd_password_file if given
    etcd_password_file: str | None = None
    unhealthy_after: float = 30.0

    def etcd_security(self) -> EtcdSecurity | None:
        """TLS and auth for the etcd backend (None when none is configured)."""
        if not (self.etcd_cacert or self.etcd_cert or self.etcd_user):
            return None
        from failover.etcd.security import EtcdSecurity

        return EtcdSecurity.of(self.etcd_cacert, self.etcd_cert, self.etcd_key, self.etcd_user, self.etcd_password)


@dataclass(frozen=True, slots=True)
class AppConfig:
    peer_id: str | None
    data_dir: Path
    listen_address: str
    log: LogSection
    metrics: MetricsSection
    v1: V1Section
    v2: V2Section
    bridge: BridgeSection
    failover: FailoverSection
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Where each non-default value came from ("file", "env", "flag"), for check-config."""

    def effective_shards(self) -> tuple[int, ...]:
        """Shards to relay: the configured ones, else all of the autosharded network (nwaku)."""
        if self.v2.shards:
            return self.v2.shards
        return tuple(range(max(1, self.v2.num_shards_in_network)))


def add_flags(parser: argparse.ArgumentParser, group: str) -> None:
    """Add the flags of ``group`` ("bridge", "v1-node", "v2-node") to ``parser``.

    Flags default to ``argparse.SUPPRESS`` so that only what the operator typed overrides the
    file and environment.  Booleans accept ``--store`` and ``--store=false`` (nwaku style).
    """
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file")
    for s in SETTINGS:
        names = s.flags.get(group)
        if not names:
            continue
        kwargs: dict[str, Any] = {"dest": s.dest, "default": argparse.SUPPRESS, "help": s.help}
        if s.parse is _bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        elif s.repeatable:
            kwargs.update(action="append", metavar=s.key.split(".")[-1].upper())
        else:
            kwargs.update(metavar=s.key.split(".")[-1].upper())
        parser.add_argument(*names, **kwargs)


def _flatten(prefix: str, data: Mapping[str, Any], out: dict[str, Any], errors: list[ConfigError]) -> None:
    for k, v in data.items():
        key = f"{prefix}{k}".replace("-", "_")
        if isinstance(v, Mapping) and key not in _BY_KEY:
            _flatten(key + ".", v, out, errors)
        elif key in _BY_KEY:
            out[key] = v
        else:
            errors.append(ConfigError(key, "unknown setting"))


def _check_wss(values: Mapping[str, Any], errors: list[ConfigError]) -> None:
    """wss needs a key and a certificate that load together (checked now: a bad pair is a startup
    error, not a failure at the first browser); key or certificate without wss is a mistake."""
    key, cert = values["v2.websocket_secure_key_path"], values["v2.websocket_secure_cert_path"]
    if not values["v2.websocket_secure_support"]:
        for k, v in (("v2.websocket_secure_key_path", key), ("v2.websocket_secure_cert_path", cert)):
            if v is not None:
                errors.append(ConfigError(k, "only used with v2.websocket_secure_support"))
        return
    missing = [k for k, v in (("v2.websocket_secure_key_path", key), ("v2.websocket_secure_cert_path", cert))
               if v is None]
    reported = {e.key for e in errors}  # an unreadable file was reported by its parser already
    for k in missing:
        if k not in reported:
            errors.append(ConfigError(k, "required with v2.websocket_secure_support (a readable PEM file)"))
    if missing:
        return
    from v2.wss import WssConfigError, server_context

    try:
        server_context(cert, key)
    except WssConfigError as exc:
        errors.append(ConfigError(f"v2.websocket_secure_{exc.setting}_path", exc.message))


def load_config(
    path: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> AppConfig:
    """Merge defaults < YAML ``path`` < ``env`` < ``flags`` and validate everything at once.

    ``flags`` is ``vars(argparse.Namespace)`` from a parser built with :func:`add_flags`.
    Raises :class:`ConfigErrors` listing every problem with its key.
    """
    env = os.environ if env is None else env
    flags = dict(flags or {})
    errors: list[ConfigError] = []
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}

    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigErrors([ConfigError("config", f"cannot read {path}: {exc.strerror}")]) from None
        except yaml.YAMLError as exc:
            raise ConfigErrors([ConfigError("config", f"{path} is not valid YAML: {exc}")]) from None
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigErrors([ConfigError("config", f"{path} must hold a mapping at the top level")])
        file_values: dict[str, Any] = {}
        _flatten("", doc, file_values, errors)
        for k, v in file_values.items():
            raw[k], sources[k] = v, "file"

    for s in SETTINGS:
        if s.env in env:
            raw[s.key], sources[s.key] = env[s.env], "env"
    for s in SETTINGS:
        if s.dest in flags:
            v = flags[s.dest]
            raw[s.key], sources[s.key] = v, "flag"

    values: dict[str, Any] = {}
    for s in SETTINGS:
        if s.key in raw:
            try:
                values[s.key] = s.parse(raw[s.key])
            except ValueError as exc:
                errors.append(ConfigError(s.key, f"{exc} (from {sources[s.key]})"))
                values[s.key] = s.default
        else:
            values[s.key] = s.default

    # Cross-field rules.
    etcd_keys = [k for k in ("failover.etcd_cacert", "failover.etcd_cert", "failover.etcd_key", "failover.etcd_user",
                             "failover.etcd_password", "failover.etcd_password_file") if values[k] is not None]
    backend = values["failover.backend"]
    if etcd_keys and not (backend or "").startswith("etcd://"):
        errors.append(ConfigError(etcd_keys[0], "only used with an etcd:// failover backend"))
    elif etcd_keys:
        if values["failover.etcd_password_file"] is not None:
            if values["failover.etcd_password"] is not None:
                errors.append(ConfigError("failover.etcd_password_file", "give etcd_password or etcd_password_file, "
                                          "not both"))
            else:
                values["failover.etcd_password"] = (
                    Path(values["failover.etcd_password_file"]).read_text().rstrip("\r\n") or None)
        from failover.etcd.security import EtcdSecurity

        try:
            EtcdSecurity.of(values["failover.etcd_cacert"], values["failover.etcd_cert"], values["failover.etcd_key"],
                            values["failover.etcd_user"], values["failover.etcd_password"]).check()
        except FailoverSetupError as exc:
            errors.append(failover_config_error(exc))
    if values["failover.backend"] != "none":
        from failover.lease import timing_for  # the startup invariant renew + 2 x rpc + safety < TTL

        try:
            timing_for(values["failover.backend"], values["failover.ttl"],
                       renew_interval=values["failover.renew_interval"], rpc_timeout=values["failover.rpc_timeout"],
                       safety=values["failover.safety"])
        except FailoverSetupError as exc:
            errors.append(failover_config_error(exc))
    if values["bridge.dedup_window"] < values["bridge.ttl"] + values["bridge.max_skew"]:
        errors.append(ConfigError(
            "bridge.dedup_window",
            f"must be >= bridge.ttl + bridge.max_skew ({values['bridge.ttl'] + values['bridge.max_skew']:g} s) "
            "or re-sent messages would be bridged twice",
        ))
    if values["v2.num_shards_in_network"] and values["v2.shards"]:
        bad = [s for s in values["v2.shards"] if s >= values["v2.num_shards_in_network"]]
        if bad:
            errors.append(ConfigError("v2.shards", f"shards {bad} >= num_shards_in_network"))
    topic = values["bridge.pubsub_topic"]
    if topic is not None and int(topic.split("/")[4]) != values["v2.cluster_id"]:
        errors.append(ConfigError("bridge.pubsub_topic", f"{topic} is not on cluster {values['v2.cluster_id']}"))
    _check_wss(values, errors)
    ports = [("v1.port", values["v1.port"]), ("v2.tcp_port", values["v2.tcp_port"])]
    if values["v2.websocket_support"] or values["v2.websocket_secure_support"]:
        ports.append(("v2.websocket_port", values["v2.websocket_port"]))
    if values["metrics.enabled"]:
        ports.append(("metrics.port", values["metrics.port"]))
    seen: dict[int, str] = {}
    for key, port in ports:
        if port and port in seen:
            errors.append(ConfigError(key, f"port {port} is also used by {seen[port]}"))
        seen.setdefault(port, key)
    if values["peer_id"] is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", values["peer_id"]):
        errors.append(ConfigError("peer_id", "use 1-64 letters, digits, '.', '_' or '-'"))

    if errors:
        raise ConfigErrors(errors)

    def section(cls: Any, prefix: str) -> Any:
        names = cls.__dataclass_fields__.keys()
        return cls(**{n: values[f"{prefix}.{n}"] for n in names})

    return AppConfig(
        peer_id=values["peer_id"],
        data_dir=Path(values["data_dir"]),
        listen_address=values["listen_address"],
        log=section(LogSection, "log"),
        metrics=section(MetricsSection, "metrics"),
        v1=section(V1Section, "v1"),
        v2=section(V2Section, "v2"),
        bridge=section(BridgeSection, "bridge"),
        failover=section(FailoverSection, "failover"),
        sources=sources,
    )
