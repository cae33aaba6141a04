"""The execution journal's bulk writes store exactly what they are given, on both back ends.

``purge execute`` writes each batch with one statement per kind of write (ids and ledger
rows bound as one value), so that its two threads do not hand the interpreter back and
forth per row; these tests pin that the values survive that trip unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mailhygiene.mailbox import IndexedMessage
from mailhygiene.purge.model import ItemState
from mailhygiene.store import index_queries, purge_queries
from mailhygiene.store.models import Message, PlanItem, QuarantineEntry
from mailhygiene.store.session import Store
from tests.plan_rows import store_plan_of
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 11, 23, 12, 30, 15, 123456, tzinfo=UTC)


def _plan(store: Store, count: int) -> int:
    return store_plan_of(store, count, at=NOW)


def test_items_are_marked_by_id_keeping_what_a_mark_does_not_name(store: Store) -> None:
    plan_id = _plan(store, 1200)
    with store.transaction() as session:
        ids = [
            item.id for item in purge_queries.items_in_state(session, plan_id, ItemState.PLANNED)
        ]
        purge_queries.mark_items(session, ids[:1000], ItemState.IN_FLIGHT, batch=3)
        purge_queries.mark_items(session, ids[:10], ItemState.DONE, done_at=NOW)
        purge_queries.mark_items(session, ids[10:12], ItemState.SKIPPED, outcome="gone ‘x’")
        purge_queries.mark_items(session, [], ItemState.DONE)
    with store.transaction() as session:
        rows = session.execute(
            select(PlanItem.id, PlanItem.state, PlanItem.outcome, PlanItem.batch, PlanItem.done_at)
            .where(PlanItem.plan_id == plan_id)
            .order_by(PlanItem.id)
        ).all()
        assert purge_queries.count_by_state(session, plan_id) == {
            "done": 10,
            "skipped": 2,
            "in_flight": 988,
            "planned": 200,
        }
    assert tuple(rows[0][1:]) == ("done", "", 3, NOW)
    assert tuple(rows[10][1:]) == ("skipped", "gone ‘x’", 3, None)
    assert tuple(rows[999][1:]) == ("in_flight", "", 3, None)
    assert tuple(rows[1000][1:]) == ("planned", "", None, None)


def test_ledger_rows_arrive_as_given(store: Store) -> None:
    rows: list[dict[str, object]] = [
        {
            "account": "info@promix.se",
            "plan_item_id": n,
            "plan_ref": "P-1",
            "original_folder": 'Inkorg/Reklamationsärenden\t"x"' if n == 2 else "INBOX",
            "quarantine_folder": "Karantän",
            "quarantine_uidvalidity": None,
            "quarantine_uid": 4_294_967_295 if n == 2 else (None if n == 3 else n),
            "message_id": "<åäö 📨 \\ 'q'@x>" if n == 2 else f"<{n}@x>",
            "size": 2**40 if n == 2 else n,
            "moved_at": NOW,
            "purge_after": NOW + timedelta(days=30),
            "state": "held",
        }
        for n in range(1, 3001)
    ]
    with store.transaction() as session:
        purge_queries.add_quarantine_entries(session, rows)
    with store.transaction() as session:
        stored = purge_queries.quarantine_entries(session, account="info@promix.se")
        got = [
            {name: getattr(entry, name) for name in rows[0]}
            for entry in sorted(stored, key=lambda e: e.plan_item_id or 0)
        ]
        assert session.scalar(select(QuarantineEntry.id).limit(1)) is not None
    assert got == rows


def _message(uid: int, message_id: str) -> IndexedMessage:
    return IndexedMessage(
        uid=uid,
        flags=(),
        internal_date=NOW,
        size=1,
        modseq=None,
        message_id=message_id,
        in_reply_to="",
        references=(),
        thread_index="",
        thread_topic="",
        subject="",
        from_addr="",
        from_name="",
        to_addrs=(),
        cc_addrs=(),
        reply_to=(),
        date_header=None,
        date_raw=None,
    )


def test_forgotten_messages_leave_only_their_folder(store: Store) -> None:
    with store.transaction() as session:
        account = index_queries.ensure_account(session, "a", "127.0.0.1", "u", NOW)
        for name in ("INBOX", "Other"):
            folder = index_queries.ensure_folder(session, account, name)
            index_queries.reset_folder(session, folder.id, 7)
            index_queries.insert_messages(
                session,
                folder.id,
                [_message(uid, f"<{name}{uid}@x>") for uid in range(1, 1501)],
                NOW,
            )
    with store.transaction() as session:
        purge_queries.forget_messages(session, "a", "INBOX", list(range(1, 1201)))
        purge_queries.forget_messages(session, "a", "Nowhere", [1, 2])
        purge_queries.forget_messages(session, "a", "INBOX", [])
    with store.transaction() as session:
        left = session.execute(select(Message.uid, Message.message_id)).all()
    assert sorted(uid for uid, mid in left if mid.startswith("<INBOX")) == list(range(1201, 1501))
    assert len([mid for _, mid in left if mid.startswith("<Other")]) == 1500
