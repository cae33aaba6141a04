"""Linking rules on the store alone (SQLite and PostgreSQL), without a mail server:
renamed threads keep their links, reviews for odd keywords, large threads and new mail
in closed cases, and idempotency."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mailhygiene.cases import service
from mailhygiene.cases.linking import LARGE_THREAD, ReviewKind, link_new_mail
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.policy import Policy
from mailhygiene.store import index_queries
from mailhygiene.store.models import CaseThread, Message
from mailhygiene.store.session import Store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = Policy(source_hash="t")


def message(
    uid: int,
    message_id: str,
    subject: str,
    when: datetime,
    refs: Sequence[str] = (),
    flags: Sequence[str] = (),
) -> IndexedMessage:
    return IndexedMessage(
        uid=uid,
        flags=tuple(flags),
        internal_date=when,
        size=100,
        modseq=None,
        message_id=message_id,
        in_reply_to=refs[-1] if refs else "",
        references=tuple(refs),
        thread_index="",
        thread_topic="",
        subject=subject,
        from_addr="anna@kund.example.se",
        from_name="",
        to_addrs=(),
        cc_addrs=(),
        reply_to=(),
        date_header=when,
        date_raw=None,
    )


def index(store: Store, folder: str, messages: Sequence[IndexedMessage]) -> None:
    with store.transaction() as session:
        account = index_queries.ensure_account(session, "support", "h", "u", NOW)
        folder_id = index_queries.ensure_folder(session, account, folder).id
        index_queries.insert_messages(session, folder_id, messages, NOW)


def thread_of(store: Store, message_id: str) -> str:
    with store.transaction() as session:
        found = session.scalar(select(Message.thread_id).where(Message.message_id == message_id))
    assert found is not None
    return found


def test_an_older_original_synced_later_renames_the_thread_and_its_link(store: Store) -> None:
    index(
        store,
        "INBOX",
        [
            message(1, "r1@x", "SV: Reklamation REK-2025-0042: lampa", NOW - 2 * DAY, ["o1@x"]),
            message(2, "r2@x", "SV: lampa", NOW - DAY, ["o1@x", "r1@x"]),
        ],
    )
    first = link_new_mail(store, POLICY, "support", now=NOW, actor="scheduler")
    assert first.created_cases == ["REK-2025-0042"]
    before = thread_of(store, "r1@x")

    index(store, "Sent", [message(1, "o1@x", "Reklamation REK-2025-0042: lampa", NOW - 9 * DAY)])
    second = link_new_mail(store, POLICY, "support", now=NOW, actor="scheduler")
    after = thread_of(store, "o1@x")
    assert second.merged_threads == 1
    assert after < before  # the oldest message names the thread
    assert {thread_of(store, m) for m in ("r1@x", "r2@x")} == {after}
    with store.transaction() as session:
        links = session.scalars(select(CaseThread)).all()
    assert [(link.thread_id, link.how) for link in links] == [(after, "pattern")]
    assert f"merged into {after}" in links[0].note
    assert second.linked == 0  # the pattern in the original finds the link already there


def test_odd_keywords_are_reviewed_and_still_protect(store: Store) -> None:
    index(
        store,
        "INBOX",
        [
            message(1, "a@x", "Trasig stol", NOW - DAY, flags=["\\Seen", "$reklamation_REK-xx"]),
            message(2, "b@x", "Fel storlek", NOW - DAY, flags=["$Reklamation_REK-2025-0007"]),
        ],
    )
    result = link_new_mail(
        store,
        Policy(case_auto_create=False, source_hash="t"),
        "support",
        now=NOW,
        actor="scheduler",
    )
    kinds = sorted(item.kind.value for item in result.review)
    assert kinds == ["malformed_keyword", "unknown_case", "untriaged", "untriaged"]
    assert result.linked == 2  # both kept (untriaged) until a person names the cases
    assert all(ref.startswith("UNTRIAGED-20260302-") for ref in result.created_cases)
    assert sorted(result.created_cases) == ["UNTRIAGED-20260302-1", "UNTRIAGED-20260302-2"]


def test_new_mail_in_a_closed_case_is_reported(store: Store) -> None:
    index(store, "INBOX", [message(1, "c1@x", "Reklamation REK-2025-0009: lampa", NOW - DAY)])
    link_new_mail(store, POLICY, "support", now=NOW, actor="scheduler")
    service.close_case(store, POLICY, ref="REK-2025-0009", reason="klar", actor="bob", now=NOW)
    index(store, "INBOX", [message(2, "c2@x", "SV: lampa", NOW + DAY, ["c1@x"])])
    result = link_new_mail(store, POLICY, "support", now=NOW + DAY, actor="scheduler")
    assert [(i.kind, i.case_ref) for i in result.review] == [
        (ReviewKind.CLOSED_CASE_MAIL, "REK-2025-0009")
    ]
    listed = service.review(store, POLICY).items
    assert [(i.kind, i.case_ref, len(i.message_rows)) for i in listed] == [
        (ReviewKind.CLOSED_CASE_MAIL, "REK-2025-0009", 1)
    ]


def test_linking_a_very_large_thread_is_reported(store: Store) -> None:
    root = message(1, "big0@x", "Reklamation REK-2025-0010: allt", NOW - 30 * DAY)
    replies = [
        message(
            i + 1, f"big{i}@x", "SV: allt", NOW - 30 * DAY + i * timedelta(minutes=5), ["big0@x"]
        )
        for i in range(1, LARGE_THREAD + 1)
    ]
    index(store, "INBOX", [root, *replies])
    result = link_new_mail(store, POLICY, "support", now=NOW, actor="scheduler")
    assert result.linked == 1
    [item] = result.review
    assert item.kind is ReviewKind.LARGE_THREAD
    assert "1,001 messages" in item.detail
    assert ReviewKind.LARGE_THREAD in {i.kind for i in service.review(store, POLICY).items}
    again = link_new_mail(store, POLICY, "support", now=NOW, actor="scheduler")
    assert (again.linked, again.threaded) == (0, 0)
    # Reported once, when linked; later runs only note that no mirror has marked it yet.
    assert [i.kind for i in again.review] == [ReviewKind.KEYWORD_REMOVED]
