"""The start-up check of the data dir's SQLite files (bridge/app/datafiles.py, common/sqlite.py
file_problem) on real files: garbage, truncated, overwritten pages, not SQLite at all."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from bridge.app.cli import EXIT_DATA, EXIT_FAIL, EXIT_OK, _exit_code
from bridge.app.datafiles import DataFile, bridge_data_files, check_data_files, quarantine_path
from bridge.errors import DataFileError
from common.sqlite import connect_wal, file_problem, is_corruption
from v2.errors import V2Error


def make_db(path: Path, rows: int = 5000) -> None:
    conn = connect_wal(str(path))
    conn.execute("CREATE TABLE dedup (key BLOB PRIMARY KEY, expires_at REAL NOT NULL)")
    conn.executemany("INSERT INTO dedup VALUES (?, ?)", [(os.urandom(32), 1.0) for _ in range(rows)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def not_sqlite(path: Path) -> None:
    path.write_text("PK\x03\x04 this is a zip, or a log file copied over the database\n" * 50)


def truncated(path: Path) -> None:
    make_db(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def truncated_header(path: Path) -> None:
    make_db(path)
    path.write_bytes(path.read_bytes()[:60])


def overwritten_pages(path: Path) -> None:
    make_db(path)
    with path.open("r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(4 * 4096))


DAMAGE: dict[str, Callable[[Path], None]] = {"garbage": garbage, "not_sqlite": not_sqlite, "truncated": truncated,
                                              "truncated_header": truncated_header,
                                              "overwritten_pages": overwritten_pages}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damage_is_found(tmp_path: Path, damage: str) -> None:
    p = tmp_path / "bridge.sqlite3"
    DAMAGE[damage](p)
    problem = file_problem(p)
    assert problem and "\n" not in problem


def test_a_good_file_an_absent_one_and_an_empty_one_pass(tmp_path: Path) -> None:
    make_db(tmp_path / "good.sqlite3")
    (tmp_path / "empty.sqlite3").touch()  # what sqlite3.connect leaves before the first write
    assert file_problem(tmp_path / "good.sqlite3") is None
    assert file_problem(tmp_path / "good.sqlite3", deep=False) is None
    assert file_problem(tmp_path / "absent.sqlite3") is None
    assert file_problem(tmp_path / "empty.sqlite3") is None


def test_a_live_writer_is_not_damage(tmp_path: Path) -> None:
    p = tmp_path / "lease.sqlite3"
    make_db(p, 10)
    writer = connect_wal(str(p))
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO dedup VALUES (?, 2.0)", (os.urandom(32),))
    try:
        assert file_problem(p) is None
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _files(tmp_path: Path) -> list[DataFile]:
    return bridge_data_files(tmp_path / "A", lease=tmp_path / "failover.sqlite3", archive=tmp_path / "A" / "store.db")


@pytest.mark.parametrize("name", ["bridge.sqlite3", "aggregates.sqlite3", "store.db", "failover.sqlite3"])
def test_a_damaged_file_is_named_with_what_to_do(tmp_path: Path, name: str) -> None:
    (tmp_path / "A").mkdir()
    path = tmp_path / name if name == "failover.sqlite3" else tmp_path / "A" / name
    garbage(path)
    with pytest.raises(DataFileError) as ei:
        check_data_files(_files(tmp_path), quarantine=False)
    msg = str(ei.value)
    assert ei.value.path == path and str(path) in msg and "file is not a database" in msg and "\n" not in msg
    assert f"mv {path} {path}.corrupt" in msg
    if name == "failover.sqlite3":
        assert "Stop every instance using it" in msg and "--quarantine-corrupt" not in msg
        with pytest.raises(DataFileError):  # never quarantined: another instance may hold a lease in it
            check_data_files(_files(tmp_path), quarantine=True)
        assert path.exists()
    else:
        assert "--quarantine-corrupt" in msg


def test_quarantine_moves_the_file_and_its_wal_aside_and_says_what_is_lost(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "A").mkdir()
    archive = tmp_path / "A" / "store.db"
    overwritten_pages(archive)
    (tmp_path / "A" / "store.db-wal").write_bytes(b"junk")
    make_db(tmp_path / "A" / "bridge.sqlite3")  # a good one stays
    now = 1_700_000_000.0
    with caplog.at_level(logging.WARNING):
        moved = check_data_files(_files(tmp_path), quarantine=True, now=now)
    dest = quarantine_path(archive, now)
    assert moved == [dest] and dest.name == "store.db.corrupt-20231114T221320Z"
    assert dest.exists() and dest.with_name(dest.name + "-wal").read_bytes() == b"junk"
    assert not archive.exists() and (tmp_path / "A" / "bridge.sqlite3").exists()
    assert "store queries answer only what arrives from now on" in caplog.text and str(dest) in caplog.text


def test_exit_codes_of_errors_out_of_trio() -> None:
    damaged = DataFileError(Path("/d/A/bridge.sqlite3"), "the dedup ledger", "file is not a database")
    assert _exit_code(damaged) == EXIT_DATA
    assert _exit_code(ExceptionGroup("nursery", [damaged])) == EXIT_DATA  # as a nursery raises it
    try:
        try:
            raise sqlite3.DatabaseError("database disk image is malformed")
        except sqlite3.DatabaseError as exc:
            raise V2Error("cannot open archive /d/A/store.sqlite3") from exc
    except V2Error as exc:
        wrapped = exc
    assert wrapped.__cause__ is not None and not is_corruption(wrapped.__cause__)  # no SQLite code: hand-made
    assert _exit_code(wrapped) == EXIT_FAIL
    assert _exit_code(BaseExceptionGroup("g", [KeyboardInterrupt()])) == EXIT_OK
    assert _exit_code(ExceptionGroup("g", [RuntimeError("a bug")])) is None  # a bug keeps its traceback


def test_a_real_corruption_error_maps_to_exit_78(tmp_path: Path) -> None:
    p = tmp_path / "x.sqlite3"
    garbage(p)
    with pytest.raises(sqlite3.DatabaseError) as ei:
        sqlite3.connect(p).execute("SELECT * FROM sqlite_schema").fetchall()
    assert is_corruption(ei.value)
    assert _exit_code(ExceptionGroup("g", [ei.value])) == EXIT_DATA
    archive_error = V2Error(f"cannot open archive {p}: {ei.value}")  # what the store raises, from the cause
    archive_error.__cause__ = ei.value
    assert _exit_code(ExceptionGroup("g", [archive_error])) == EXIT_DATA


async def test_the_check_runs_off_the_event_loop(tmp_path: Path) -> None:
    (tmp_path / "A").mkdir()
    make_db(tmp_path / "A" / "bridge.sqlite3")
    assert await trio.to_thread.run_sync(lambda: check_data_files(_files(tmp_path), quarantine=False)) == []
