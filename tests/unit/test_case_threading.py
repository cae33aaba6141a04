"""Threading after sync loads only the part of the index that can matter; the ids it gives
must equal threading everything at once (``assign_threads``), whatever the batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mailhygiene.cases.linking import thread_account
from mailhygiene.devtools.mailbox import outlook_thread_index
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.store import index_queries, thread_queries
from mailhygiene.store.models import Message
from mailhygiene.store.session import Store, open_store
from mailhygiene.threads import ThreadInput, assign_threads

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SUBJECTS = ["Trasig lampa", "SV: Trasig lampa", "Faktura 12", "Re: Faktura 12", "Hej", ""]
CONVERSATIONS = [
    outlook_thread_index(NOW - timedelta(days=50), bytes([n] * 16)) for n in range(1, 3)
]


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[list[IndexedMessage], list[int]]:
    """Messages naming each other (and ids nobody has), Outlook conversations, recurring
    subjects over ~4 months; and the sizes of the sync batches they arrive in."""
    count = draw(st.integers(min_value=1, max_value=24))
    messages = []
    for uid in range(1, count + 1):
        refs = draw(st.lists(st.integers(min_value=0, max_value=count + 3), max_size=3))
        conversation = draw(st.sampled_from(["", "", *CONVERSATIONS]))
        days = draw(st.integers(min_value=0, max_value=120))
        named = tuple(f"m{r}@x.example" for r in refs)
        messages.append(
            IndexedMessage(
                uid=uid,
                flags=(),
                internal_date=NOW - timedelta(days=days),
                size=100,
                modseq=None,
                message_id=draw(st.sampled_from([f"m{uid}@x.example", f"m{uid}@x.example", ""])),
                in_reply_to=named[-1] if named else "",
                references=named,
                thread_index=conversation,
                thread_topic="",
                subject=draw(st.sampled_from(SUBJECTS)),
                from_addr="a@x.example",
                from_name="",
                to_addrs=(),
                cc_addrs=(),
                reply_to=(),
                date_header=draw(st.sampled_from([None, NOW - timedelta(days=days, hours=1)])),
                date_raw=None,
            )
        )
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=count), max_size=4)))
    return messages, cuts


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[Path]:
    return tmp_path


def _index(store: Store, folder_id: int, batch: list[IndexedMessage]) -> None:
    with store.transaction() as session:
        index_queries.insert_messages(session, folder_id, batch, NOW)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mailboxes())
def test_incremental_threading_equals_threading_everything(
    fresh_store: Path, case: tuple[list[IndexedMessage], list[int]]
) -> None:
    messages, cuts = case
    path = fresh_store / f"t{id(case)}.db"
    store = open_store(f"sqlite:///{path}")
    try:
        with store.transaction() as session:
            account = index_queries.ensure_account(session, "support", "h", "u", NOW)
            folder = index_queries.ensure_folder(session, account, "INBOX").id
        start = 0
        for end in [*cuts, len(messages)]:
            if end > start:
                _index(store, folder, messages[start:end])
                with store.transaction() as session:
                    thread_queries.lock_threading(session)
                    thread_account(session, "support")
            start = end
        with store.transaction() as session:
            rows = [
                tuple(r)
                for r in session.execute(select(Message.id, Message.uid, Message.thread_id))
            ]
        by_uid = {m.uid: m for m in messages}
        expected = assign_threads(
            ThreadInput(
                row_id,
                m.message_id,
                m.in_reply_to,
                m.references,
                m.thread_index,
                m.subject,
                m.date_header or m.internal_date,
            )
            for row_id, uid, _thread in rows
            for m in [by_uid[uid]]
        )
        assert {row_id: thread for row_id, _uid, thread in rows} == expected
    finally:
        store.close()
        path.unlink(missing_ok=True)
