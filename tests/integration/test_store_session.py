"""How the store connects to PostgreSQL: the settings every connection starts with."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mailhygiene.errors import StoreError
from mailhygiene.store.driver import DriverTarget, connect
from mailhygiene.store.session import open_store
from tests.store_fixtures import StoreTarget, store_target_fixture  # noqa: F401


@pytest.mark.parametrize("store_target", ["postgresql"], indirect=True)
def test_postgres_connections_run_without_jit_and_keep_the_urls_own_options(
    store_target: StoreTarget,
) -> None:
    """JIT compiling cost more than our queries' work (0.26 s of a 0.30 s keyword scan at
    100k); it is off on the store's connections and on the index workers' driver
    connections, and options the URL gives still apply."""
    store = open_store(
        f"{store_target.url}?options=-cstatement_timeout%3D4321",
        schema=store_target.schema,
        migrate=False,
    )
    try:
        with store.engine.connect() as connection:
            settings = {
                name: connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("jit", "statement_timeout", "search_path")
            }
        assert settings == {
            "jit": "off",
            "statement_timeout": "4321ms",
            "search_path": store_target.schema,
        }
        worker = connect(store.driver_target)
        try:
            assert worker.execute("SHOW jit").fetchone() == ("off",)
            assert worker.execute("SHOW search_path").fetchone() == (store_target.schema,)
        finally:
            worker.close()
    finally:
        store.close()


@pytest.mark.parametrize(
    "target",
    [
        DriverTarget("sqlite", ("/nonexistent-mailhygiene-dir/index.db",), {}),
        DriverTarget(
            "postgresql", (), {"host": "127.0.0.1", "port": 1, "dbname": "test", "user": "x"}
        ),
    ],
    ids=["sqlite", "postgresql"],
)
def test_a_worker_that_cannot_open_the_database_says_so_in_one_line(target: DriverTarget) -> None:
    """Reaches the parent and the CLI as a ``StoreError`` (one line), not a driver traceback."""
    with pytest.raises(StoreError) as raised:
        connect(target)
    message = str(raised.value)
    assert message.startswith("an index worker cannot open the database: ")
    assert "check [database] url" in message
    assert "\n" not in message
