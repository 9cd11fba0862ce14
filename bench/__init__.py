"""Benchmarks behind docs/performance.md; ``python -m bench [name ...]`` runs them (``make bench``).

``python -m bench NAME --help`` (or ``python -m bench.NAME --help``) describes one module;
``python -m bench sustained --rate R --seconds S`` is the sustained-load run (bench/sustained.py).
"""

from __future__ import annotations

import sys

__all__ = ["help_or_continue"]


def help_or_continue(prog: str, doc: str | None, argv: list[str], usage: str = "") -> None:
    """``-h``/``--help``: print the module's docstring (what it measures, how to run it) and exit."""
    if "-h" in argv or "--help" in argv:
        print(f"usage: python -m {prog} {usage}".rstrip() + "\n")
        print((doc or "").strip())
        sys.exit(0)
