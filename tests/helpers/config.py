"""Parse command-line flags the way the CLI does, for load_config tests."""

from __future__ import annotations

import argparse

from bridge.app.config import add_flags

__all__ = ["parse_flags"]


def parse_flags(group: str, argv: list[str]) -> dict[str, object]:
    """``vars()`` of ``argv`` parsed by the flags of ``group`` ("bridge", "v1-node", "v2-node"),
    without ``--config`` (what ``load_config``'s ``flags`` argument takes)."""
    p = argparse.ArgumentParser()
    add_flags(p, group)
    ns = vars(p.parse_args(argv))
    ns.pop("config", None)
    return ns
