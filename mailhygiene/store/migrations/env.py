"""Alembic environment: runs against the engine handed over by ``store.migrate``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import context

from mailhygiene.store.models import Base

engine = context.config.attributes["engine"]

CHECKED_BY_TRIGGERS_ON_POSTGRESQL = frozenset(
    {"fk_plan_items_plan_id_plans", "fk_plan_members_plan_id_plans"}
)
"""Foreign keys that PostgreSQL enforces with per-statement triggers instead (migrations
0009 and 0010): the models declare them for SQLite, and the drift check expects them
there only."""


def _compared_on(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    def include_object(
        _object: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any
    ) -> bool:
        return not (
            dialect == "postgresql"
            and type_ == "foreign_key_constraint"
            and name in CHECKED_BY_TRIGGERS_ON_POSTGRESQL
        )

    return include_object


with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_compared_on(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
