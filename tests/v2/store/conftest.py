"""The store suite runs on both archive backends: ``store_db`` is parametrized (ids ``sqlite``,
``postgres``) and gives a URL per name (the same name, the same database: reopen tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.postgres import PostgresServer

DbFactory = Callable[..., str]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgres"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> DbFactory:
    if request.param == "sqlite":
        return lambda name="store": f"sqlite://{tmp_path / (name + '.sqlite3')}"
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    urls: dict[str, str] = {}

    def make(name: str = "store") -> str:
        if name not in urls:
            urls[name] = pg.new_schema()
        return urls[name]

    return make
