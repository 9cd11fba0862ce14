"""A small real tmpfs for disk-full tests (the sandbox runs as root), and a ballast file that fills it."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fill", "tmpfs"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``path`` (created) for the block; always unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        # lazy: a process of the test that still has a file open must not make the unmount fail
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(ballast: Path, *, leave: int = 0) -> int:
    """Write ``ballast`` until the file system is full (``leave`` bytes short of it); returns its size."""
    chunk = b"\0" * 65536
    n = 0
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            free = os.statvfs(ballast).f_bavail * os.statvfs(ballast).f_frsize
            if free <= leave:
                break
            try:
                n += os.write(fd, chunk[:max(1, min(len(chunk), free - leave))])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return n
