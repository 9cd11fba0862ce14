"""Store v3 pieces shared by the codec, planner, archive, service and client (pure; waku-v2.md §7).

Status codes, limits, the archive eligibility rule, and the parsers of the two nwaku flags the
archive takes (``--store-message-db-url``, ``--store-message-retention-policy``; §18).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

from v2.core.message import WakuMessage
from v2.errors import V2Error

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "HASH_SIZE",
    "MAX_CONTENT_TOPICS",
    "MAX_PAGE_SIZE",
    "MAX_TIMESTAMP_VARIANCE_NS",
    "MIN_SIZE_RETENTION",
    "ArchiveError",
    "CapacityRetention",
    "DbUrl",
    "HistoryRequest",
    "HistoryResult",
    "RetentionPolicy",
    "SizeRetention",
    "StatusCode",
    "StoreConfigError",
    "StoreError",
    "TimeRetention",
    "ineligibility",
    "parse_db_url",
    "parse_retention_policy",
    "redact_db_url",
]

HASH_SIZE = 32
DEFAULT_PAGE_SIZE = 20  # nwaku waku_archive DefaultPageSize
MAX_PAGE_SIZE = 100  # nwaku MaxPageSize; larger limits are clamped, not refused
MAX_CONTENT_TOPICS = 10  # nwaku MaxContentTopicsPerQuery
MAX_TIMESTAMP_VARIANCE_NS = 20 * 10**9  # nwaku MaxMessageTimestampVariance (20 s)


class StatusCode(IntEnum):
    """Store v3 status codes (waku-v2.md §7)."""

    OK = 200
    BAD_RESPONSE = 300  # nwaku: every archive-level error, including invalid queries
    BAD_REQUEST = 400  # nwaku: the request did not decode
    TOO_MANY_REQUESTS = 429
    SERVICE_UNAVAILABLE = 503
    PEER_DIAL_FAILURE = 504  # client side only: never on the wire from a server


class StoreError(V2Error):
    """Root of the store's errors."""


class ArchiveError(StoreError):
    """The archive could not do what was asked (SQLite failure, closed archive, bad schema)."""


class StoreConfigError(StoreError):
    """A bad store flag value; ``key`` names the flag (nwaku's name, ``store_message_db_url``, ...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def ineligibility(msg: WakuMessage, now: float) -> str | None:
    """Why ``msg`` must not be archived at wall-clock ``now`` (seconds), or None if it may be.

    nwaku's archive validator (waku_archive/archive.nim): never ephemeral messages, and only
    ``|timestamp − now| ≤ 20 s``, which also keeps a peer from back- or forward-dating history.
    The returned strings are the ``waku_archive_errors{type}`` labels (nwaku's where it has one).
    """
    if msg.ephemeral:
        return "invalid_message_ephemeral"
    now_ns = int(now * 1e9)
    ts = msg.timestamp or 0
    if ts < now_ns - MAX_TIMESTAMP_VARIANCE_NS:
        return "invalid_message_too_old"
    if ts > now_ns + MAX_TIMESTAMP_VARIANCE_NS:
        return "invalid_message_future_timestamp"
    return None


@dataclass(frozen=True, slots=True)
class TimeRetention:
    """Keep messages whose timestamp is at most ``seconds`` old."""

    seconds: int


@dataclass(frozen=True, slots=True)
class CapacityRetention:
    """Keep only the newest ``capacity`` messages (by timestamp, then hash)."""

    capacity: int


@dataclass(frozen=True, slots=True)
class SizeRetention:
    """Keep the archive at most ``max_bytes`` (SQLite: page_count × page_size; PostgreSQL: the
    messages table with its indexes), dropping the oldest messages."""

    max_bytes: int


RetentionPolicy = TimeRetention | CapacityRetention | SizeRetention

_RETENTION_KEY = "store_message_retention_policy"

# nwaku (waku_archive/retention_policy/builder.nim) lowercases the flag and takes "mb" and "gb"
# only, both binary (MB = 1024² bytes).  We take the same two, plus kb and the explicit
# kib/mib/gib spellings, all binary as well, so "MB" means what it means to nwaku.
_SIZE_UNITS = {"kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2, "gb": 1024**3, "gib": 1024**3}
_SIZE_RE = re.compile(r"^(\d*\.?\d+)([a-z]+)$")  # nwaku's number: \d*\.?\d+ (decimals allowed)
# Below this even an empty archive (schema and index roots, a few pages) would leave so little
# room that each purge would remove nearly everything: refused rather than silently useless.
MIN_SIZE_RETENTION = 64 * 1024


def _positive_int(text: str, what: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise StoreConfigError(_RETENTION_KEY, f"{what} must be a positive integer, got {text!r}") from None
    if n <= 0:
        raise StoreConfigError(_RETENTION_KEY, f"{what} must be a positive integer, got {text!r}")
    return n


def _size(text: str) -> int:
    """``30GB``, ``512MiB``, ``1.5gb`` → bytes (units case-insensitive, all binary; see _SIZE_UNITS)."""
    m = _SIZE_RE.match(text.strip().lower())
    if m is None:
        raise StoreConfigError(_RETENTION_KEY, f"size retention must be size:<number><unit> with a positive "
                                               f"number and a unit of KB, MB or GB (KiB/MiB/GiB), got {text!r}")
    unit = _SIZE_UNITS.get(m.group(2))
    if unit is None:
        raise StoreConfigError(_RETENTION_KEY, f"unknown size unit {m.group(2)!r} in {text!r}; expected KB, MB or "
                                               "GB (binary, as nwaku: 1 MB = 1024 KB), or KiB, MiB, GiB")
    quantity = float(m.group(1)) * unit
    if not math.isfinite(quantity):  # 400 digits parse as inf
        raise StoreConfigError(_RETENTION_KEY, f"size retention {text[:40]!r}… is too large")
    n = int(quantity)
    if n < MIN_SIZE_RETENTION:
        raise StoreConfigError(_RETENTION_KEY, f"size retention {text!r} is below the minimum of 64KB")
    return n


def parse_retention_policy(spec: str) -> tuple[RetentionPolicy, ...]:
    """Parse nwaku's ``--store-message-retention-policy``: ``time:<s>``, ``capacity:<n>``,
    ``size:<n><KB|MB|GB>``, ``none``.

    Several policies may be joined with ``;`` (as newer nwaku allows); all of them apply.
    """
    text = spec.strip()
    if text == "" or text.lower() == "none":
        return ()
    policies: list[RetentionPolicy] = []
    for part in text.split(";"):
        kind, sep, value = part.strip().partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise StoreConfigError(_RETENTION_KEY, f"expected time:<seconds>, capacity:<count>, size:<n>MB/GB "
                                                   f"or none, got {part!r}")
        if kind == "time":
            policies.append(TimeRetention(_positive_int(value.strip(), "time retention (seconds)")))
        elif kind == "capacity":
            policies.append(CapacityRetention(_positive_int(value.strip(), "capacity retention (messages)")))
        elif kind == "size":
            policies.append(SizeRetention(_size(value)))
        else:
            raise StoreConfigError(_RETENTION_KEY, f"unknown retention policy {kind!r} in {spec!r}; "
                                                   "expected time:<seconds>, capacity:<count>, size:<n>MB/GB or none")
    return tuple(policies)


@dataclass(frozen=True, slots=True)
class DbUrl:
    """Where the archive lives: a SQLite file (or memory), or a PostgreSQL database.

    ``path`` is the SQLite path; for PostgreSQL ``url`` is the libpq connection URL (with the
    password) and ``redacted`` the same without it, for logs and errors.
    """

    path: str
    scheme: str = "sqlite"
    url: str = ""

    @property
    def in_memory(self) -> bool:
        return self.scheme == "sqlite" and self.path == ":memory:"

    @property
    def is_postgres(self) -> bool:
        return self.scheme == "postgres"

    @property
    def redacted(self) -> str:
        if not self.is_postgres:
            return f"sqlite://{self.path}"
        return redact_db_url(self.url)


_DB_KEY = "store_message_db_url"
_DB_FORMS = "sqlite://<path>, sqlite://:memory: or postgres://user:password@host:port/db"


def redact_db_url(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``; never fails."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.partition(':')[0]}:***@{host}"


def _postgres_url(url: str) -> DbUrl:
    """nwaku's form ``postgres://user:password@host:port/db`` (``postgresql://`` too; port
    defaults to 5432; query parameters such as ``sslmode=require`` pass through to libpq)."""
    shown = redact_db_url(url)  # a password never reaches an error message
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StoreConfigError(_DB_KEY, f"bad PostgreSQL URL {shown!r}: {exc}") from None
    if not parts.hostname:
        raise StoreConfigError(_DB_KEY, f"no host in {shown!r}; expected postgres://user:password@host:port/db")
    if not parts.path.strip("/"):
        raise StoreConfigError(_DB_KEY, f"no database name in {shown!r}; expected postgres://user:password@host:port/db")
    if port == 0:
        raise StoreConfigError(_DB_KEY, f"port 0 in {shown!r}")
    if parts.fragment:
        raise StoreConfigError(_DB_KEY, f"unexpected #fragment in {shown!r}")
    return DbUrl(parts.path.strip("/"), "postgres", "postgresql://" + url.partition("://")[2])


def parse_db_url(url: str) -> DbUrl:
    """Parse nwaku's ``--store-message-db-url``: ``sqlite://<path>``, ``sqlite://:memory:`` or
    ``postgres://user:password@host:port/db``.

    ``sqlite://store.sqlite3`` is relative, ``sqlite:///var/lib/x.db`` absolute (nwaku's forms).
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise StoreConfigError(_DB_KEY, f"expected {_DB_FORMS}, got {redact_db_url(url)!r}")
    if scheme.lower() in ("postgres", "postgresql"):
        return _postgres_url(url.strip())
    if scheme.lower() != "sqlite":
        raise StoreConfigError(_DB_KEY, f"unknown database scheme {scheme!r}; expected {_DB_FORMS}")
    if not rest:
        raise StoreConfigError(_DB_KEY, f"no database path in {url!r}")
    return DbUrl(":memory:" if rest in ("memory", ":memory:") else rest)


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """One history lookup (:func:`v2.store.client.query_history`): messages on ``pubsub_topic``
    with one of ``content_topics`` and ``time_start <= timestamp < time_end`` (ns), as a store v3
    query expresses it."""

    pubsub_topic: str
    content_topics: tuple[str, ...]  # at most MAX_CONTENT_TOPICS
    time_start: int
    time_end: int


@dataclass(frozen=True, slots=True)
class HistoryResult:
    messages: tuple[WakuMessage, ...] = ()
    sources: int = 0  # how many history sources were asked
    failures: tuple[str, ...] = ()  # one short reason per source that did not answer in full
