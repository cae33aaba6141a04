"""Store fixtures over both back ends: a SQLite file and the local PostgreSQL server.

Import them explicitly where needed::

    from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

and ask for them as ``store`` / ``store_target`` (the fixture names; the module-level
names differ so a test parameter called ``store`` does not shadow an import).

``store_target`` gives what a test needs to open the same database again (in another
process, say); ``store`` is an open, migrated store on it. PostgreSQL runs get a schema
of their own (``mh_test_<hex>``), dropped afterwards, and carry ``pytest.mark.postgres``.
Without a reachable server the PostgreSQL runs are skipped locally and fail under CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from mailhygiene.errors import StoreError
from mailhygiene.store.session import Store, open_store

POSTGRES_URL = os.environ.get("MAILHYGIENE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1/test")


@dataclass(frozen=True)
class StoreTarget:
    """Where a test database lives; ``open()`` may be called from any process."""

    backend: str
    url: str
    schema: str | None = None

    def open(self) -> Store:
        return open_store(self.url, schema=self.schema)


def _postgres_target() -> Iterator[StoreTarget]:
    schema = f"mh_test_{uuid.uuid4().hex}"
    try:
        probe = open_store(POSTGRES_URL, schema=schema, migrate=False)
    except StoreError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable ({exc}); CI must provide it", pytrace=False)
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    try:
        yield StoreTarget("postgresql", POSTGRES_URL, schema)
    finally:
        with probe.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        probe.close()


@pytest.fixture(
    name="store_target",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_target_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """A fresh, empty database on each back end (not yet opened)."""
    if request.param == "sqlite":
        yield StoreTarget("sqlite", f"sqlite:///{tmp_path / 'mh.db'}")
    else:
        yield from _postgres_target()


@pytest.fixture(name="store")
def store_fixture(store_target: StoreTarget) -> Iterator[Store]:
    """An open, migrated store on ``store_target``; closed after the test."""
    opened = store_target.open()
    try:
        yield opened
    finally:
        opened.close()
