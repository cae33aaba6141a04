"""SQL for plans, their journal, approvals and the quarantine ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Subquery,
    Table,
    Text,
    delete,
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from mailhygiene.errors import NotFoundError
from mailhygiene.purge.model import (
    HASH_LINE_COLUMNS,
    ItemGroup,
    ItemState,
    PlanKind,
    PlannedMessage,
    hash_lines,
)
from mailhygiene.store.driver import naive_utc, sqlite_utc_text
from mailhygiene.store.models import (
    Account,
    Approval,
    Folder,
    Plan,
    PlanItem,
    PlanMember,
    QuarantineDoubt,
    QuarantineEntry,
    UTCDateTime,
)
from mailhygiene.store.session import among, driver_cursor

_CHUNK = 500
_ROWS_PER_FETCH = 5000


def _pairs(result: Iterable[Any]) -> dict[Any, Any]:
    """Two-column rows as a dict (a ``Result`` has ``keys()``, so ``dict()`` misreads it)."""
    return {key: value for key, value in result}  # noqa: C416 - dict(Result) misreads it


def insert_plan(session: Session, plan: Plan, items: Sequence[PlannedMessage]) -> Plan:
    session.add(plan)
    session.flush()
    insert_members(session, plan.id, items)
    return plan


_MEMBER_COLUMNS = (
    "plan_id, message_row, folder, uidvalidity, uid, message_id, size, internal_date, action, "
    "reason_kind, reason_name, reason_detail"
)


def insert_members(session: Session, plan_id: int, items: Sequence[PlannedMessage]) -> None:
    """Store ``items`` as members of ``plan_id`` (``PlanMember``), with the driver's own
    executemany (SQLAlchemy's per-row parameter handling costs more than the insert)."""
    if not items:
        return
    session.flush()
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    to_driver = sqlite_utc_text if sqlite else naive_utc
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO plan_members ({_MEMBER_COLUMNS}) "  # noqa: S608 - constant names
        f"VALUES ({', '.join([marker] * 12)})",
        [
            (
                plan_id,
                item.message_row,
                item.folder,
                item.uidvalidity,
                item.uid,
                item.message_id,
                item.size,
                to_driver(item.internal_date),
                item.action.value,
                item.reason_kind,
                item.reason_name,
                item.reason_detail,
            )
            for item in items
        ],
    )


def index_new_members(session: Session) -> None:
    """Bring the BRIN index of ``plan_members`` up to the rows just stored (PostgreSQL).

    A BRIN index reads every block range it has not summarised, and a server summarises
    only when it vacuums the table (and never, without autovacuum): without this, finding
    one plan's members would read every member of every plan stored since. It reads only
    the new ranges, and counts the rows of this transaction as well.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.flush()
    session.connection().exec_driver_sql(
        "SELECT brin_summarize_new_values('ix_plan_members_plan'::regclass)"
    )


def write_journal(session: Session, plan_id: int) -> int:
    """Move the plan's members into the journal (``plan_items``, ``planned``, same ids);
    returns how many. ``purge execute`` does this as it starts, with the plan locked;
    a plan whose journal is written has no members, and this does nothing."""
    session.flush()
    connection = session.connection()
    marker = "%s" if connection.dialect.name == "postgresql" else "?"
    columns = f"id, {_MEMBER_COLUMNS}"
    written = connection.exec_driver_sql(
        f"INSERT INTO plan_items ({columns}, state, outcome) "  # noqa: S608 - constant names
        f"SELECT {columns}, {marker}, '' FROM plan_members WHERE plan_id = {marker} "
        "ORDER BY id",
        (ItemState.PLANNED.value, plan_id),
    ).rowcount
    connection.exec_driver_sql(
        f"DELETE FROM plan_members WHERE plan_id = {marker}",  # noqa: S608 - a marker
        (plan_id,),
    )
    return int(written)


_SHARED_COLUMNS = (
    "id",
    "plan_id",
    "message_row",
    "folder",
    "uidvalidity",
    "uid",
    "message_id",
    "size",
    "internal_date",
    "action",
    "reason_kind",
    "reason_name",
    "reason_detail",
)
_JOURNAL_COLUMNS = ("state", "outcome", "batch", "done_at")


def plan_entries(*plan_ids: int, columns: Sequence[str] = ()) -> Subquery:
    """The items of ``plan_ids`` wherever they are: journal rows, and the members of plans
    not yet executing (``planned``, no outcome). It has the columns of ``PlanItem``, or
    just ``columns`` of them (SQLite reads every column of a union it is asked for)."""
    names = columns or (*_SHARED_COLUMNS, *_JOURNAL_COLUMNS)
    as_member: dict[str, ColumnElement[Any]] = {
        "state": literal(ItemState.PLANNED.value, String),
        "outcome": literal("", Text),
        "batch": null().cast(Integer),
        "done_at": null().cast(UTCDateTime),
    }
    journal = select(*(getattr(PlanItem, name) for name in names)).where(
        PlanItem.plan_id.in_(plan_ids)
    )
    members = select(
        *(
            as_member[name].label(name) if name in as_member else getattr(PlanMember, name)
            for name in names
        )
    ).where(PlanMember.plan_id.in_(plan_ids))
    return union_all(journal, members).subquery("plan_entries")


def get_plan(session: Session, ref: str, *, for_update: bool = False) -> Plan:
    query = select(Plan).where(Plan.ref == ref)
    if for_update:
        query = query.with_for_update()
    plan = session.scalar(query)
    if plan is None:
        raise NotFoundError(f"no plan {ref!r}; 'mailhygiene purge list' shows plans")
    return plan


def list_plans(session: Session, *, account: str | None = None, limit: int = 50) -> list[Plan]:
    query = select(Plan).order_by(Plan.id.desc()).limit(limit)
    if account:
        query = query.where(Plan.account == account)
    return list(session.scalars(query))


# why: a literal tab inside the quotes (valid in SQLite and PostgreSQL alike)
_HASH_LINE_SQL = " || '\t' || ".join(HASH_LINE_COLUMNS)
_STORED_HASH_LINES = (
    "SELECT {line} FROM plan_items WHERE plan_id = {marker} "
    "UNION ALL SELECT {line} FROM plan_members WHERE plan_id = {marker}"
)


def stored_content_hash(session: Session, plan: Plan) -> tuple[str, int]:
    """The content hash of ``plan``'s items as stored (its members, or its journal once
    it executes), and how many there are.

    The database writes each item's line of the hash (``purge.model.HASH_LINE_COLUMNS``):
    a plan may hold a million items, and reading them as rows would cost more than the
    query. A server-side cursor on PostgreSQL.
    """
    session.flush()
    postgresql = session.get_bind().dialect.name == "postgresql"
    cursor = driver_cursor(session, server_side="mailhygiene_plan_lines")
    lines: list[str] = []
    try:
        marker = "%s" if postgresql else "?"
        cursor.execute(
            _STORED_HASH_LINES.format(line=_HASH_LINE_SQL, marker=marker), (plan.id, plan.id)
        )
        while rows := cursor.fetchmany(_ROWS_PER_FETCH):
            lines += [line for (line,) in rows]
    finally:
        cursor.close()
    digest = hash_lines(
        kind=PlanKind(plan.kind), account=plan.account, policy_hash=plan.policy_hash, lines=lines
    )
    return digest, len(lines)


def item_groups(session: Session, plan_id: int) -> list[ItemGroup]:
    """The plan's items by folder and reason: how many, and their bytes."""
    session.flush()
    groups: dict[tuple[str, str, str], list[int]] = {}
    # why: each table grouped on its own: SQLite would copy every row through a union first
    for table in (PlanMember, PlanItem):
        query = (
            select(
                table.folder,
                table.reason_kind,
                table.reason_name,
                func.count(),
                func.coalesce(func.sum(table.size), 0),
            )
            .where(table.plan_id == plan_id)
            .group_by(table.folder, table.reason_kind, table.reason_name)
        )
        for folder, kind, name, messages, size in session.execute(query):
            totals = groups.setdefault((folder, kind, name), [0, 0])
            totals[0] += int(messages)
            totals[1] += int(size)  # PostgreSQL sums to Decimal
    return [(*group, messages, size) for group, (messages, size) in groups.items()]


class JournalItem(NamedTuple):
    """What executing a plan item needs of it. A named tuple read through the driver's
    own cursor: a run starts by reading every planned item (66k for a 100k mailbox), and
    SQLAlchemy's rows and a frozen dataclass each cost more than the query."""

    id: int
    message_row: int | None
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    size: int
    action: str


_ITEMS_IN_STATE = (
    "SELECT id, message_row, folder, uidvalidity, uid, message_id, size, action "
    "FROM plan_items WHERE plan_id = {marker} AND state = {marker} ORDER BY folder, uid"
)


def items_in_state(session: Session, plan_id: int, state: ItemState) -> list[JournalItem]:
    """The plan's items in ``state``, by folder and UID (the order they are executed in)."""
    session.flush()
    marker = "%s" if session.get_bind().dialect.name == "postgresql" else "?"
    cursor = driver_cursor(session)
    try:
        cursor.execute(_ITEMS_IN_STATE.format(marker=marker), (plan_id, state.value))
        return [JournalItem(*row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def count_by_state(session: Session, plan_id: int) -> dict[str, int]:
    items = plan_entries(plan_id, columns=("state",))
    return _pairs(session.execute(select(items.c.state, func.count()).group_by(items.c.state)))


def skipped_reasons(session: Session, plan_id: int) -> dict[str, int]:
    return _pairs(
        session.execute(
            select(PlanItem.outcome, func.count())
            .where(PlanItem.plan_id == plan_id, PlanItem.state == ItemState.SKIPPED.value)
            .group_by(PlanItem.outcome)
        )
    )


_MARK = (
    "UPDATE plan_items SET state = {m}, outcome = {m}, batch = coalesce({m}, batch), "
    "done_at = coalesce({m}, done_at) WHERE id {ids}"
)


def mark_items(
    session: Session,
    item_ids: Sequence[int],
    state: ItemState,
    *,
    outcome: str = "",
    batch: int | None = None,
    done_at: datetime | None = None,
) -> None:
    """Journal items as ``state`` (with ``outcome``; ``batch`` and ``done_at`` when given).

    One statement, the ids bound as one value: ``purge execute`` marks batches of 5,000
    on two threads, and each statement, or each row of an executemany, hands the
    interpreter to the other thread and waits to get it back.
    """
    if not item_ids:
        return
    session.flush()
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    condition, ids = among(sqlite, item_ids)
    at = sqlite_utc_text(done_at) if sqlite else naive_utc(done_at)
    connection.exec_driver_sql(
        _MARK.format(m="?" if sqlite else "%s", ids=condition),
        (state.value, outcome, batch, at, ids),
    )


def add_approval(session: Session, approval: Approval) -> None:
    session.add(approval)


def approvals(session: Session, plan_id: int) -> list[Approval]:
    return list(
        session.scalars(select(Approval).where(Approval.plan_id == plan_id).order_by(Approval.id))
    )


def forget_messages(session: Session, account: str, folder: str, uids: Sequence[int]) -> None:
    """Drop index rows for messages that left ``folder`` (moved or deleted by us), in one
    statement (see ``mark_items``)."""
    folder_id = session.scalar(
        select(Folder.id)
        .join(Account, Account.id == Folder.account_id)
        .where(Account.name == account, Folder.name == folder)
    )
    if folder_id is None or not uids:
        return
    session.flush()
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    marker = "?" if sqlite else "%s"
    condition, listed = among(sqlite, uids)
    connection.exec_driver_sql(
        f"DELETE FROM messages WHERE folder_id = {marker} AND uid {condition}",  # noqa: S608
        (folder_id, listed),
    )


def add_quarantine_entries(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert ledger rows (``QuarantineEntry`` column names as keys, the same in each)."""
    if not rows:
        return
    columns = list(rows[0])
    known = cast(Table, QuarantineEntry.__table__).c.keys()
    if unknown := [name for name in columns if name not in known]:
        raise ValueError(f"no quarantine column(s) {unknown}")
    connection = session.connection()
    # why: the driver's own executemany; SQLAlchemy's per-row parameter handling costs
    # more than the insert, and a purge writes one row per moved message (one statement
    # over JSON, as mark_items does, took SQLite longer: a json_extract per value)
    to_driver = sqlite_utc_text if connection.dialect.name == "sqlite" else naive_utc
    # why: a batch's rows share their instants (moved now, purgeable after the grace);
    # converting each again took most of the time spent here
    converted: dict[datetime, Any] = {}

    def driver_value(value: object) -> object:
        if not isinstance(value, datetime):
            return value
        text = converted.get(value)
        if text is None:
            text = converted[value] = to_driver(value)
        return text

    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    statement = (
        f"INSERT INTO quarantine ({', '.join(columns)}) "  # noqa: S608 - checked names only
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    connection.exec_driver_sql(
        statement, [tuple(map(driver_value, map(row.get, columns))) for row in rows]
    )


def quarantine_entries(
    session: Session,
    *,
    account: str,
    states: Sequence[str] = ("held",),
    plan_ref: str | None = None,
    ids: Sequence[int] | None = None,
) -> list[QuarantineEntry]:
    query = select(QuarantineEntry).where(
        QuarantineEntry.account == account, QuarantineEntry.state.in_(list(states))
    )
    if plan_ref:
        query = query.where(QuarantineEntry.plan_ref == plan_ref)
    if ids is not None:
        query = query.where(QuarantineEntry.id.in_(list(ids)))
    return list(session.scalars(query.order_by(QuarantineEntry.id)))


def record_quarantine_doubts(
    session: Session,
    *,
    account: str,
    plan_ref: str,
    original_folder: str,
    quarantine_folder: str,
    quarantine_uids: Iterable[int],
    at: datetime,
) -> None:
    """Record what a move in doubt says it put in quarantine (``QuarantineDoubt``)."""
    session.add_all(
        QuarantineDoubt(
            account=account,
            plan_ref=plan_ref,
            original_folder=original_folder,
            quarantine_folder=quarantine_folder,
            quarantine_uid=uid,
            recorded_at=at,
        )
        for uid in sorted(set(quarantine_uids))
    )


def quarantine_doubts(session: Session, *, account: str) -> list[QuarantineDoubt]:
    return list(
        session.scalars(
            select(QuarantineDoubt)
            .where(QuarantineDoubt.account == account)
            .order_by(QuarantineDoubt.id)
        )
    )


def clear_quarantine_doubts(session: Session, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            delete(QuarantineDoubt).where(QuarantineDoubt.id.in_(list(ids[start : start + _CHUNK])))
        )


def close_quarantine_entries(
    session: Session, ids: Sequence[int], *, state: str, at: datetime, by: str
) -> None:
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            update(QuarantineEntry)
            .where(QuarantineEntry.id.in_(list(ids[start : start + _CHUNK])))
            .values(state=state, closed_at=at, closed_by=by)
        )


def sample_items(session: Session, plan_id: int, *, per_reason: int) -> list[dict[str, object]]:
    """The first ``per_reason`` items (in plan order) of each reason, in plan order.

    Picked by the database (a window function): a plan may hold a million items.
    """
    items = plan_entries(plan_id)
    rank = (
        func.row_number()
        .over(partition_by=(items.c.reason_kind, items.c.reason_name), order_by=items.c.id)
        .label("rank")
    )
    ranked = select(items, rank).subquery()
    query = select(ranked).where(ranked.c.rank <= per_reason).order_by(ranked.c.id)
    return [
        {
            "folder": item.folder,
            "uid": item.uid,
            "message_id": item.message_id,
            "size": item.size,
            "internal_date": item.internal_date,
            "reason": f"{item.reason_kind}:{item.reason_name}",
            "detail": item.reason_detail,
            "state": item.state,
            "outcome": item.outcome,
        }
        for item in session.execute(query)
    ]
