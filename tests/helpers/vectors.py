"""Load the published test vectors from ``tests/vectors/`` (copied verbatim; sources in its README)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["VECTORS_DIR", "load_vectors"]

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_DIR = Path(os.environ.get("WAKU_BRIDGE_VECTORS", REPO_ROOT / "tests" / "vectors"))


def load_vectors(name: str) -> Any:
    """Return the parsed JSON of ``VECTORS_DIR/name`` (e.g. ``"eip8_rlpx.json"``)."""
    path = VECTORS_DIR / name
    if not path.exists():  # a missing vector file is a broken checkout, never a skip
        raise FileNotFoundError(f"test vectors not found at {path}; set WAKU_BRIDGE_VECTORS")
    return json.loads(path.read_text())
