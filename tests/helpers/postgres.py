"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package (scripts/setup.sh
installs it), a throwaway cluster in a temp dir on a free loopback port.

PostgreSQL refuses to run as root, and tests run as root in CI: the cluster then belongs to
``nobody`` and ``initdb``/``postgres`` run under ``runuser``.  Durability is off unless asked for
(fsync, synchronous_commit): the tests check semantics, not crash safety, and this keeps a test
database cheap.  Each test gets its own schema (:meth:`PostgresServer.new_schema`) or database.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.helpers.net import LOOPBACK, free_port

__all__ = ["PostgresServer", "postgres_bin_dir"]

_UNPRIVILEGED = "nobody"


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with initdb and postgres in it."""
    root = Path("/usr/lib/postgresql")
    dirs = sorted((d / "bin" for d in root.glob("*") if (d / "bin" / "postgres").exists()),
                  key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not dirs:
        raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)")
    return dirs[-1]


class PostgresServer:
    """``with PostgresServer() as pg: url = pg.new_database()``."""

    def __init__(self, *, durable: bool = False, shared_buffers: str = "64MB") -> None:
        self.durable = durable  # fsync on (benchmarks); commits still not waited for, as SQLite's NORMAL
        self.shared_buffers = shared_buffers
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="waku-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._seq = itertools.count()
        self._shared: str | None = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", _UNPRIVILEGED, "--"]
            user = pwd.getpwnam(_UNPRIVILEGED)
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def url(self, database: str) -> str:
        """nwaku's form, with a password (trust auth ignores it; the parser wants the full form)."""
        return f"postgres://postgres:secret@{LOOPBACK}:{self.port}/{database}"

    def start(self) -> None:
        data = self.dir / "data"
        log = self.dir / "server.log"
        init = subprocess.run([*self._as_user, str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                               "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"], capture_output=True,
                              cwd=self.dir)  # the unprivileged user may not be able to enter ours
        if init.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
        with open(log, "wb") as out:
            # Only the postgres user can write the log file: let the server own it.
            if self._as_user:
                user = pwd.getpwnam(_UNPRIVILEGED)
                os.chown(log, user.pw_uid, user.pw_gid)
            self.proc = subprocess.Popen(
                [*self._as_user, str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", f"listen_addresses={LOOPBACK}", "-c", f"unix_socket_directories={self.dir}",
                 "-c", "synchronous_commit=off", "-c", "max_connections=200",
                 "-c", f"shared_buffers={self.shared_buffers}",
                 *([] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"])],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)

    def new_database(self) -> str:
        """A fresh, empty database; returns its ``postgres://`` URL."""
        name = f"t{os.getpid()}_{next(self._seq)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")  # no WAL copy of the template
        return self.url(name)

    def new_schema(self) -> str:
        """A fresh, empty schema in one shared database, as the first of the session's
        ``search_path`` (in the URL's server options): a database is a ~7 MiB copy of the
        template, a schema is nothing, and a suite makes a hundred of them."""
        if self._shared is None:
            self._shared = self.new_database()
        name = f"s{next(self._seq)}"
        with psycopg.connect(self._shared.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self._shared}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        if self.proc is not None:
            # SIGTERM is a "smart" shutdown, which waits for the clients; SIGINT is "fast".  Sent
            # to the postmaster itself (runuser in between does not pass SIGINT on).
            pid_file = self.dir / "data" / "postmaster.pid"
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
