"""What Linux's /proc says of a process, for the benchmarks: CPU time and memory (proc(5):
``/proc/PID/stat`` fields 14-15, ``/proc/PID/status``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_s", "status_kib"]


def cpu_s(pid: int | str = "self") -> float:
    """utime + stime of every thread, in seconds; OSError once the process is gone."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int | str = "self", key: str = "VmRSS") -> int:
    """A ``/proc/PID/status`` size in KiB (VmRSS, VmHWM, ...); 0 if absent, OSError once gone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
