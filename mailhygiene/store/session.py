"""Open the index database: SQLite (WAL) by default, PostgreSQL by URL; migrate on open.

Opening a store always brings its schema to the newest migration, so an upgrade of
mailhygiene never needs a manual step. ``schema`` (PostgreSQL only) puts every table
in a named schema, which the test-suite uses to isolate runs on a shared server.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailhygiene.errors import StoreError
from mailhygiene.store.driver import DriverTarget, prepare_sqlite

_POSTGRES_DRIVER = "postgresql+psycopg"

_QUERIED_COLUMNS = ("id", "folder_id", "uid", "message_id", "thread_id", "flags", "internal_date")
"""The messages columns queries filter, join and order by (``Store.settle_bulk_load``)."""

BULK_CHANGE_MIN = 1_000
BULK_CHANGE_SHARE = 0.1
"""Messages written at once from which the table is settled (``Store.settle_after``): at
least ``BULK_CHANGE_MIN`` rows and a ``BULK_CHANGE_SHARE`` of the table, the share at
which PostgreSQL's autovacuum would analyze it."""


@dataclass(frozen=True)
class Store:
    """An open database: the engine and a session factory bound to it.

    ``url`` (with the password; never shown) and ``schema`` let another process open
    the same database with ``open_store(store.url, schema=store.schema, migrate=False)``,
    or with the driver alone through ``driver_target`` (the parallel indexer's workers
    do); ``shareable`` says whether that reaches the same data (not for an in-memory
    SQLite database).
    """

    engine: Engine
    sessions: sessionmaker[Session]
    url_for_display: str
    url: str = field(default="", repr=False, compare=False)
    schema: str | None = None
    connect_args: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def driver_target(self) -> DriverTarget:
        """The driver's ``connect`` arguments as this store's engine uses them."""
        args, params = self.engine.dialect.create_connect_args(self.engine.url)
        # "context": the adapters SQLAlchemy registers for its own type handling; the
        # driver-level write needs none, and they do not pickle to another process.
        params = {key: value for key, value in params.items() if key != "context"}
        return DriverTarget(self.engine.dialect.name, tuple(args), {**params, **self.connect_args})

    @property
    def shareable(self) -> bool:
        if not self.url:
            return False
        if not self.is_sqlite:
            return True
        parsed = make_url(self.url)
        return parsed.database not in (None, "", ":memory:") and (
            parsed.query.get("mode") != "memory"
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block or rolls back on error."""
        with self.sessions.begin() as session:
            yield session

    def settle_after(self, written: int) -> bool:
        """Settle the messages table (``settle_bulk_load``) when ``written`` of its rows
        were just inserted or updated, if they are a bulk (``BULK_CHANGE_MIN``,
        ``BULK_CHANGE_SHARE``); returns whether it did.

        Why not leave it to autovacuum: a sync is followed at once by linking and a plan,
        which would be planned for the table as it was (a first sync of 30k messages:
        ``purge plan`` 0.51 s on PostgreSQL without, 0.35 s with statistics and the
        linking's old row versions vacuumed), and a server may run without autovacuum.
        """
        if written < BULK_CHANGE_MIN:
            return False
        # why: counted only as far as the decision needs: a full count of a large SQLite table
        # reads its smallest index from disk (seconds at 1M, for a sync of 1% new mail)
        bulk_up_to = int(written / BULK_CHANGE_SHARE)
        with self.engine.connect() as connection:
            counted = connection.execute(
                text("SELECT count(*) FROM (SELECT 1 FROM messages LIMIT :rows) AS counted"),
                {"rows": bulk_up_to + 1},
            ).scalar_one()
        if counted > bulk_up_to:
            return False
        self.settle_bulk_load()
        return True

    def settle_bulk_load(self) -> None:
        """After a bulk write of messages (an initial sync, its threading), give the query
        planner statistics.

        On PostgreSQL, ``VACUUM (ANALYZE)`` the table: the planner learns its size and
        the columns queries filter, join and order by, and the pages are marked all-visible —
        counting a folder's rows by index then visits no table pages, which is most of a
        no-change resync. Only those columns are analyzed: sorting samples of the free
        text (subjects, addresses, headers) is most of a full ``ANALYZE`` (0.30 s of
        0.39 s at 100k), and autovacuum analyzes them in its time. On SQLite, ``ANALYZE
        messages`` (0.1 s per 100k): without statistics SQLite guesses that a folder holds
        ten messages, and reads messages by id (``purge execute``, every 5,000) through
        the folder's whole index instead of by rowid — 0.42 s instead of 0.19 s a batch."""
        with self.engine.connect() as connection:
            if self.is_sqlite:
                connection.exec_driver_sql("ANALYZE messages")
                connection.commit()
                return
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql(f"VACUUM (ANALYZE) messages ({', '.join(_QUERIED_COLUMNS)})")

    def close(self) -> None:
        self.engine.dispose()


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs; leave everything else alone."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return _POSTGRES_DRIVER + "://" + url.split("://", 1)[1]
    return url


def open_store(url: str, *, schema: str | None = None, migrate: bool = True) -> Store:
    """Connect to ``url``, create the SQLite file owner-only, and migrate to the newest schema."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from None
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _create_private_file(Path(parsed.database))
        connect_args["timeout"] = 30
    else:
        connect_args["options"] = _postgres_options(parsed.query.get("options"), schema)
    engine = create_engine(parsed, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    display = parsed.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            if schema and engine.dialect.name == "postgresql":
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                connection.commit()
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(
            f"cannot open the database {display}: {reason} — check [database] url in the settings"
        ) from None
    store = Store(
        engine,
        sessionmaker(engine, expire_on_commit=False),
        display,
        url=parsed.render_as_string(hide_password=False),
        schema=schema if engine.dialect.name == "postgresql" else None,
        connect_args=connect_args,
    )
    if migrate:
        from mailhygiene.store.migrate import upgrade_to_head

        upgrade_to_head(store)
    return store


def _postgres_options(given: object, schema: str | None) -> str:
    """The server settings every PostgreSQL connection of ours starts with, after any the
    URL gives (``?options=...``).

    ``jit=off``: PostgreSQL compiles a query to machine code when its estimated cost is
    high, and every scan of a 100k-message table estimates high. The compiling cost
    more than the work: the keyword scan of the linking after each sync took 0.30 s at
    100k messages, 0.26 s of it JIT, for 40 ms of execution.
    """
    settings = [given] if isinstance(given, str) and given else []
    settings.append("-cjit=off")
    if schema:
        settings.append(f"-csearch_path={schema}")
    return " ".join(settings)


def _create_private_file(path: Path) -> None:
    """Create the database file with mode 0600: the index holds personal data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, stat.S_IRUSR | stat.S_IWUSR)
        os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    prepare_sqlite(dbapi_connection)


__all__ = ["Session", "Store", "normalise_url", "open_store"]


def driver_cursor(session: Session, *, server_side: str | None = None) -> Any:
    """The database driver's own cursor in ``session``'s transaction, for reading many rows
    without SQLAlchemy's per-row cost. With ``server_side``, on PostgreSQL a server-side
    cursor of that name (a query only), so that a million rows are fetched in parts, not
    held at once."""
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    if dbapi is None:  # pragma: no cover - only after the connection was invalidated
        raise StoreError("the database connection was lost; run the command again")
    if server_side is not None and connection.dialect.name == "postgresql":
        return dbapi.cursor(name=server_side)
    return dbapi.cursor()


def among(sqlite: bool, ids: Collection[int | str], *, negate: bool = False) -> tuple[str, Any]:
    """A condition that a column is (``negate``: is not) among ``ids`` (or names), to follow the
    column in driver SQL, and its one parameter: the ids bound as one value, whatever
    their number (a SQL list is limited in length, and each statement is a trip through
    the driver). SQLite reads them from JSON, PostgreSQL from an array."""
    if sqlite:
        listed = json.dumps(list(ids))
        if negate:
            return "NOT IN (SELECT value FROM json_each(?))", listed
        return "IN (SELECT value FROM json_each(?))", listed
    return ("<> ALL(%s)" if negate else "= ANY(%s)"), list(ids)
