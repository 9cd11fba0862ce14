"""Every test under tests/interop/ talks to a third-party peer: mark it ``interop`` here, so a new
interop file gets the marker without remembering it (``pytest -m "not interop"`` stays honest)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the whole session's items: mark only this folder's.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.interop)
