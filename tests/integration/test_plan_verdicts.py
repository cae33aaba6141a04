"""Planning from stored retention verdicts gives the very plan ``decide`` gives.

``compute_plan`` over a whole account plans untouched mail from ``retention_verdicts``
and judges only what a hold or a case touches; ``compute_plan(message_rows=...)`` judges
every message with ``decide``; ``plan_purge`` stores the former with SQL (the verdicts'
items never pass through Python) and hashes and totals the stored rows. On a mixed
mailbox (rules by subject, folder and keyword; undated mail; open, closed and unlinked
cases; plain and per-case keywords in any spelling; a hold; quarantine) all three must
agree item for item and total for total, and go on agreeing when flags, the policy,
holds and cases change, and after messages leave.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import OperationalError

from mailhygiene.holds import place_hold, release_hold
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.policy import (
    Anchor,
    Duration,
    DurationUnit,
    FolderMatcher,
    KeywordMatcher,
    Policy,
    RetentionRule,
    SubjectMatcher,
)
from mailhygiene.processes import Parallelism
from mailhygiene.purge.approve import verify_plan_integrity
from mailhygiene.purge.model import ItemAction, ItemState, PlannedMessage
from mailhygiene.purge.plan import PlanComputation, compute_plan, plan_purge, stored_summary
from mailhygiene.purge.views import plan_items_sample
from mailhygiene.retention import refresh_verdicts
from mailhygiene.store import index_queries, purge_queries
from mailhygiene.store.models import (
    Case,
    CaseThread,
    Message,
    Plan,
    PlanItem,
    PlanMember,
    StoredVerdict,
)
from mailhygiene.store.session import Store, open_store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

ACCOUNT = "info@promix.se"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
FOLDERS = ("INBOX", "INBOX/Ekonomi", "Nyhetsbrev", "Quarantine")
FLAG_CHOICES = (
    (),
    ("\\Seen",),
    ("\\Seen", "$Faktura"),
    ("$Reklamation",),
    ("$REKLAMATION", "\\Seen"),
    ("$Reklamation_REK-2026-0001",),
    ("$reklamation_rek-2026-0002",),
    ("$Reklamation_REK-2026-0099",),
    ("$Reklamationer",),
)
SENDERS = ("kund@example.se", "tvist@motpart.se", *["news@list.se"] * 4)
SUBJECTS = ("Faktura 1234", "Hej", "Veckobrev", "Ditt kvitto", "Re: REK-2026-0001")


def years(count: int) -> Duration:
    return Duration(count, DurationUnit.YEARS)


def days(count: int) -> Duration:
    return Duration(count, DurationUnit.DAYS)


POLICY = Policy(
    default_keep=days(180),
    rules=(
        RetentionRule(
            "bookkeeping", years(7), Anchor.END_OF_YEAR, (SubjectMatcher(("faktura", "kvitto")),)
        ),
        RetentionRule("newsletters", days(30), Anchor.RECEIVED, (FolderMatcher(("Nyhetsbrev",)),)),
        RetentionRule(
            "marked-invoices", years(10), Anchor.RECEIVED, (KeywordMatcher(("$Faktura",)),)
        ),
    ),
    case_keep_after_close=days(90),
)


def _messages(rng: random.Random, first_uid: int, count: int) -> list[IndexedMessage]:
    messages = []
    for uid in range(first_uid, first_uid + count):
        when: datetime | None = NOW - timedelta(days=rng.uniform(0, 9 * 365))
        date_header = when
        if rng.random() < 0.05:
            when = None
            date_header = None if rng.random() < 0.5 else NOW - timedelta(days=400)
        messages.append(
            IndexedMessage(
                uid=uid,
                flags=rng.choice(FLAG_CHOICES) if rng.random() < 0.3 else ("\\Seen",),
                internal_date=when,
                size=rng.randint(100, 90_000),
                modseq=None,
                message_id=f"<m{uid}-{rng.random()}@test>",
                in_reply_to="",
                references=(),
                thread_index="",
                thread_topic="",
                subject=rng.choice(SUBJECTS),
                from_addr=rng.choice(
                    ("kund@example.se", "tvist@motpart.se", *["news@list.se"] * 4)
                ),
                from_name="",
                to_addrs=("info@promix.se",),
                cc_addrs=(),
                reply_to=(),
                date_header=date_header,
                date_raw=None,
            )
        )
    return messages


@pytest.fixture
def mailbox(store: Store) -> Store:
    return _filled(store)


def _filled(store: Store) -> Store:
    """600 messages over four folders; threads t0..t9; four cases; one hold."""
    rng = random.Random(20261123)
    with store.transaction() as session:
        account_id = index_queries.ensure_account(session, ACCOUNT, "127.0.0.1", "u", NOW)
        for number, folder in enumerate(FOLDERS):
            state = index_queries.ensure_folder(session, account_id, folder)
            index_queries.reset_folder(session, state.id, 7)
            index_queries.insert_messages(
                session, state.id, _messages(rng, 1 + number * 1000, 150), NOW
            )
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
        for row_id in ids:
            if rng.random() < 0.3:
                session.execute(
                    update(Message)
                    .where(Message.id == row_id)
                    .values(thread_id=f"t{rng.randrange(10)}")
                )
        cases = [
            ("REK-2026-0001", "open", None, "t1", None),
            ("REK-2026-0002", "closed", NOW - timedelta(days=20), "t2", None),
            ("REK-2026-0003", "closed", NOW - timedelta(days=900), "t3", None),
            ("REK-2026-0004", "closed", None, "t4", None),
            ("REK-2026-0005", "open", None, "t5", NOW - timedelta(days=1)),  # unlinked
        ]
        for ref, status, closed_at, thread, unlinked_at in cases:
            case = Case(
                ref=ref,
                status=status,
                created_how="manual",
                opened_at=NOW - timedelta(days=1000),
                opened_by="test",
                closed_at=closed_at,
            )
            session.add(case)
            session.flush()
            session.add(
                CaseThread(
                    case_id=case.id,
                    thread_id=thread,
                    how="manual",
                    linked_at=NOW - timedelta(days=999),
                    linked_by="test",
                    unlinked_at=unlinked_at,
                )
            )
    place_hold(
        store, name="tvist", query="from:tvist@motpart.se", reason="dispute", actor="t", now=NOW
    )
    return store


def _all_rows(store: Store) -> list[int]:
    with store.transaction() as session:
        return list(session.scalars(select(Message.id).order_by(Message.id)))


def _both(store: Store, policy: Policy, now: datetime) -> tuple[PlanComputation, PlanComputation]:
    fast = compute_plan(store, policy, account=ACCOUNT, now=now, actor="t")
    judged = compute_plan(
        store, policy, account=ACCOUNT, now=now, actor="t", message_rows=_all_rows(store)
    )
    return fast, judged


def assert_same_plan(store: Store, policy: Policy, now: datetime) -> PlanComputation:
    fast, judged = _both(store, policy, now)
    assert [tuple(item) for item in fast.items] == [tuple(item) for item in judged.items]
    for name in ("item_count", "total_bytes", "content_hash", "by_folder", "by_reason"):
        assert getattr(fast.summary, name) == getattr(judged.summary, name), name
    assert fast.summary.kept == judged.summary.kept
    assert fast.summary.undated == judged.summary.undated
    stored = json.loads(fast.summary.to_json())  # what is saved with the plan, as JSON
    assert all(type(n) is int for totals in stored["by_folder"].values() for n in totals.values())
    assert all(type(n) is int for totals in stored["by_reason"].values() for n in totals.values())
    assert_stored_plan_is(store, policy, now, fast)
    return fast


def assert_stored_plan_is(
    store: Store, policy: Policy, now: datetime, expected: PlanComputation
) -> None:
    """``plan_purge`` (items copied into the plan's members by SQL, hash and totals from
    the stored rows) stores exactly the computed plan, approving it finds it intact, and
    so it is once its journal is written, as executing it does first."""
    summary = plan_purge(store, policy, account=ACCOUNT, now=now, actor="t")
    for name in ("item_count", "total_bytes", "content_hash", "by_folder", "by_reason", "kept"):
        assert getattr(summary, name) == getattr(expected.summary, name), name
    assert summary.undated == expected.summary.undated
    if summary.ref is None:
        assert not expected.items
        return
    assert stored_summary(store, summary.ref).to_json() == expected.summary.to_json()
    expected_rows = [tuple(item) for item in expected.items]
    with store.transaction() as session:
        plan = session.scalars(select(Plan).where(Plan.ref == summary.ref)).one()
        members = session.scalars(
            select(PlanMember).where(PlanMember.plan_id == plan.id).order_by(PlanMember.message_row)
        ).all()
        assert [_planned(row) for row in members] == expected_rows
        assert not session.scalar(select(func.count()).where(PlanItem.plan_id == plan.id))
        verify_plan_integrity(session, plan)
        member_ids = sorted(row.id for row in members)
        assert purge_queries.write_journal(session, plan.id) == len(members)
    with store.transaction() as session:
        rows = session.scalars(
            select(PlanItem).where(PlanItem.plan_id == plan.id).order_by(PlanItem.message_row)
        ).all()
        assert [_journaled(row) for row in rows] == expected_rows
        assert sorted(row.id for row in rows) == member_ids
        assert not session.scalar(select(func.count()).where(PlanMember.plan_id == plan.id))
        verify_plan_integrity(session, plan)
        assert purge_queries.write_journal(session, plan.id) == 0


def _journaled(row: PlanItem) -> tuple[object, ...]:
    assert row.state == ItemState.PLANNED.value
    assert row.outcome == ""
    assert (row.batch, row.done_at) == (None, None)
    return _planned(row)


def _planned(row: PlanItem | PlanMember) -> tuple[object, ...]:
    return tuple(
        PlannedMessage(
            row.message_row or 0,
            row.folder,
            row.uidvalidity,
            row.uid,
            row.message_id,
            row.size,
            row.internal_date,
            ItemAction(row.action),
            row.reason_kind,
            row.reason_name,
            row.reason_detail,
        )
    )


def _verdict_count(store: Store) -> int:
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(StoredVerdict)) or 0


def test_the_plan_from_stored_verdicts_is_the_plan_decide_makes(mailbox: Store) -> None:
    fast = assert_same_plan(mailbox, POLICY, NOW)
    summary = fast.summary
    assert summary.item_count > 100
    assert {"hold", "case_open", "case_keyword", "case_closed", "rule", "no_date"} <= set(
        summary.kept
    )
    with mailbox.transaction() as session:
        old_case = set(session.scalars(select(Message.id).where(Message.thread_id == "t3")))
    assert old_case & {item.message_row for item in fast.items}  # its period is over
    assert "Quarantine" not in summary.by_folder
    assert _verdict_count(mailbox) == 450  # every message outside quarantine, once
    for later in (NOW + timedelta(days=40), NOW + timedelta(days=3000), NOW - timedelta(days=2000)):
        assert_same_plan(mailbox, POLICY, later)


def test_a_database_only_one_connection_reaches_is_planned_alike(mailbox: Store) -> None:
    """``plan_purge`` judges over a second connection while the first stores the due items;
    an in-memory SQLite database is not shared between connections, so there both run
    on one, one after the other, to the same plan."""
    alone = _filled(open_store("sqlite://"))
    try:
        assert not alone.shareable
        assert mailbox.shareable
        expected = assert_same_plan(mailbox, POLICY, NOW)
        assert_same_plan(alone, POLICY, NOW)
        summary = plan_purge(alone, POLICY, account=ACCOUNT, now=NOW, actor="t")
        assert (summary.item_count, summary.content_hash) == (
            expected.summary.item_count,
            expected.summary.content_hash,
        )
    finally:
        alone.close()


def test_changed_flags_and_policy_are_judged_afresh(mailbox: Store) -> None:
    assert_same_plan(mailbox, POLICY, NOW)
    with mailbox.transaction() as session:
        old = session.scalars(select(Message.id).where(Message.flags == "").limit(30)).all()
        session.execute(update(Message).where(Message.id.in_(old)).values(flags="$Faktura"))
        marked = session.scalars(select(Message.id).where(Message.flags == "\\Seen").limit(5))
        session.execute(
            update(Message)
            .where(Message.id.in_(list(marked)))
            .values(flags="\\Seen $Reklamation_REK-2026-0077")
        )
    assert_same_plan(mailbox, POLICY, NOW)
    shorter = replace(POLICY, default_keep=days(30))
    assert shorter.retention_key != POLICY.retention_key
    assert_same_plan(mailbox, shorter, NOW)
    assert_same_plan(mailbox, POLICY, NOW)  # and back: recomputed again, not mixed up
    unrelated = replace(POLICY, case_keep_after_close=days(400))
    assert unrelated.retention_key == POLICY.retention_key
    assert_same_plan(mailbox, unrelated, NOW)


def test_holds_and_cases_changed_since_the_last_plan_count(mailbox: Store) -> None:
    assert_same_plan(mailbox, POLICY, NOW)
    release_hold(mailbox, name="tvist", actor="t", now=NOW)
    place_hold(mailbox, name="kund", query="from:kund@example.se", reason="r", actor="t", now=NOW)
    with mailbox.transaction() as session:
        session.execute(update(Case).where(Case.ref == "REK-2026-0001").values(status="closed"))
        session.execute(
            update(Case)
            .where(Case.ref == "REK-2026-0001")
            .values(closed_at=NOW - timedelta(days=10))
        )
        session.execute(
            update(CaseThread).where(CaseThread.thread_id == "t5").values(unlinked_at=None)
        )
    assert_same_plan(mailbox, POLICY, NOW)


def test_verdicts_leave_with_their_messages_and_new_mail_gets_one(mailbox: Store) -> None:
    assert_same_plan(mailbox, POLICY, NOW)
    with mailbox.transaction() as session:
        gone = session.scalars(select(Message.id).order_by(Message.id.desc()).limit(200)).all()
        session.execute(delete(Message).where(Message.id.in_(list(gone))))
    with mailbox.transaction() as session:
        remaining = session.scalar(select(func.count()).select_from(Message)) or 0
    assert _verdict_count(mailbox) <= remaining
    with mailbox.transaction() as session:
        account_id = index_queries.ensure_account(session, ACCOUNT, "127.0.0.1", "u", NOW)
        inbox = index_queries.ensure_folder(session, account_id, "INBOX")
        # New rows may reuse the deleted rows' ids on SQLite: no stale verdict may apply.
        index_queries.insert_messages(
            session, inbox.id, _messages(random.Random(7), 5000, 120), NOW
        )
    assert_same_plan(mailbox, POLICY, NOW)


def test_a_plans_sample_is_the_first_items_of_each_reason(mailbox: Store) -> None:
    summary = plan_purge(mailbox, POLICY, account=ACCOUNT, now=NOW, actor="t")
    assert summary.ref is not None
    assert len(summary.by_reason) > 2
    with mailbox.transaction() as session:
        plan = session.scalars(select(Plan).where(Plan.ref == summary.ref)).one()
        rows = session.scalars(
            select(PlanMember).where(PlanMember.plan_id == plan.id).order_by(PlanMember.id)
        ).all()
        taken: dict[str, int] = {}
        expected = []
        for row in rows:  # what a reviewer is shown: the first two of each reason
            reason = f"{row.reason_kind}:{row.reason_name}"
            if taken.get(reason, 0) < 2:
                taken[reason] = taken.get(reason, 0) + 1
                expected.append((row.uid, reason, row.reason_detail, "planned"))

    def shown() -> list[tuple[object, ...]]:
        sample = plan_items_sample(mailbox, summary.ref or "", per_reason=2)
        return [(i["uid"], i["reason"], i["detail"], i["state"]) for i in sample]

    assert shown() == expected
    with mailbox.transaction() as session:
        purge_queries.write_journal(session, plan.id)
    assert shown() == expected  # the same once the journal is written


def _stored_verdicts(store: Store) -> list[tuple[object, ...]]:
    with store.transaction() as session:
        rows = session.execute(
            select(
                StoredVerdict.message_id,
                StoredVerdict.policy_key,
                StoredVerdict.flags,
                StoredVerdict.kind,
                StoredVerdict.name,
                StoredVerdict.keep_until,
                StoredVerdict.detail,
            ).order_by(StoredVerdict.message_id)
        )
        return [tuple(row) for row in rows]


def _refresh(store: Store, policy: Policy, parallel: Parallelism | None = None) -> int:
    with store.transaction() as session:
        return refresh_verdicts(
            session,
            policy,
            account=ACCOUNT,
            exclude_folders=(policy.quarantine_folder,),
            store=store if parallel else None,
            parallel=parallel,
        )


IN_WORKERS = Parallelism(workers=2, threshold=1)


def test_verdicts_judged_in_worker_processes_are_the_verdicts_judged_here(
    mailbox: Store,
) -> None:
    shorter = replace(POLICY, default_keep=days(30))
    assert _refresh(mailbox, POLICY) == 450
    first = _stored_verdicts(mailbox)
    assert _refresh(mailbox, shorter) == 450  # a new policy: every verdict is replaced
    second = _stored_verdicts(mailbox)
    assert first != second
    with mailbox.transaction() as session:
        session.execute(delete(StoredVerdict))

    assert _refresh(mailbox, POLICY, IN_WORKERS) == 450
    assert _stored_verdicts(mailbox) == first
    assert _refresh(mailbox, shorter, IN_WORKERS) == 450
    assert _stored_verdicts(mailbox) == second
    assert _refresh(mailbox, shorter, IN_WORKERS) == 0


def test_a_workers_database_error_fails_the_refresh_and_nothing_is_saved(
    mailbox: Store, tmp_path: Path
) -> None:
    elsewhere = replace(mailbox, url=f"sqlite:///{tmp_path}/empty.db", schema=None)
    with (
        pytest.raises(OperationalError, match="no such table: messages"),
        mailbox.transaction() as session,
    ):
        refresh_verdicts(
            session,
            POLICY,
            account=ACCOUNT,
            exclude_folders=("Quarantine",),
            store=elsewhere,
            parallel=IN_WORKERS,
        )
    assert _verdict_count(mailbox) == 0
