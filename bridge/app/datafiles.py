"""The state files of the data dir, checked before the bridge starts.

A damaged file (garbage bytes, a truncated copy, something that is not SQLite) would otherwise
fail deep inside the start-up with a traceback, and systemd would restart it into the same
failure every two seconds.  Each file is opened read-only first (common/sqlite.py
:func:`file_problem`): a problem is one log line naming the file, what it holds, and what to do,
and the process exits 78 (EX_CONFIG, sysexits.h), which the unit's ``RestartPreventExitStatus``
keeps from restarting (deploy/systemd/waku-bridge@.service).

``bridge.quarantine_corrupt`` (``--quarantine-corrupt``) moves a damaged file of this instance
aside (``<name>.corrupt-<UTC time>``, with its ``-wal`` and ``-shm``) and starts with a fresh one,
saying what that loses.  Never the failover lease: other instances of the host may be using that
file right now, and a fresh one beside it would let two instances each hold a lease.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import DataFileError
from common.sqlite import file_problem

__all__ = ["DEEP_CHECK_LIMIT", "DataFile", "bridge_data_files", "check_data_files", "quarantine_path"]

log = logging.getLogger(__name__)

# Files up to this size get SQLite's quick_check (a read of the whole file: ~0.35 s per 100 MiB
# from the page cache); a larger archive gets the header and first pages of each table only, and
# the archive's own open (a COUNT over the messages table) finds the rest.
DEEP_CHECK_LIMIT = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DataFile:
    path: Path
    what: str  # what it holds, for the message
    loss: str  # what starting with a fresh file loses
    quarantine: bool  # may be moved aside by --quarantine-corrupt


def bridge_data_files(instance_dir: Path, *, lease: Path | None, archive: Path | None) -> list[DataFile]:
    """The SQLite files a bridge instance opens (pure)."""
    files = [
        DataFile(instance_dir / "bridge.sqlite3", "the dedup ledger",
                 "messages still in v1 pools or the v2 gossip window may be bridged once more (the same bytes: "
                 "the networks absorb them)", True),
        DataFile(instance_dir / "aggregates.sqlite3", "the hourly aggregates of `waku-bridge report`",
                 "the migration report's history of this instance", True),
    ]
    if archive is not None:
        files.append(DataFile(archive, "the v2 store archive",
                              "every archived message: store queries answer only what arrives from now on", True))
    if lease is not None:
        files.append(DataFile(lease, "the failover lease, shared by the instances of this host", "", False))
    return files


def quarantine_path(path: Path, now: float) -> Path:
    return path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}")


def _advice(f: DataFile) -> str:
    if not f.quarantine:
        return (f"Stop every instance using it, move it aside with its -wal and -shm files (mv {f.path} "
                f"{f.path}.corrupt), and start them again: a new lease is created")
    return (f"Move it aside with its -wal and -shm files (mv {f.path} {f.path}.corrupt) and start again, or start "
            f"with --quarantine-corrupt to do that automatically; a fresh file loses {f.loss}")


def check_data_files(files: list[DataFile], *, quarantine: bool, now: float | None = None) -> list[Path]:
    """Raise :class:`DataFileError` for the first damaged file, or, with ``quarantine``, move the
    damaged ones that allow it aside; returns where they went."""
    moved: list[Path] = []
    for f in files:
        try:
            deep = f.path.stat().st_size <= DEEP_CHECK_LIMIT
        except OSError:
            continue  # absent: created on first use
        problem = file_problem(f.path, deep=deep)
        if problem is None:
            continue
        if not (quarantine and f.quarantine):
            raise DataFileError(f.path, f.what, f"{problem}. {_advice(f)}")
        dest = quarantine_path(f.path, time.time() if now is None else now)
        for suffix in ("", "-wal", "-shm"):
            src = f.path.with_name(f.path.name + suffix)
            if src.exists():
                src.rename(dest.with_name(dest.name + suffix))
        log.warning("%s (%s) is damaged (%s): moved to %s, starting with a fresh one; lost: %s",
                    f.path, f.what, problem, dest, f.loss)
        moved.append(dest)
    return moved
