"""The audit chain on SQLite and PostgreSQL: append, verify, tampering, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from mailhygiene.audit import log as audit_log
from mailhygiene.audit.events import (
    GENESIS_HASH,
    AuditEntry,
    AuditTag,
    ChainHead,
    canonical_json,
    chain_hash,
    encode_entry,
    message_ref,
    normalise_data,
)
from mailhygiene.store import audit_queries
from mailhygiene.store.session import Store
from tests.store_fixtures import StoreTarget, store_fixture, store_target_fixture  # noqa: F401

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _fill(store: Store, count: int, *, start: int = 0) -> list[AuditEntry]:
    entries = []
    for i in range(start, start + count):
        with store.transaction() as session:
            entries.append(
                audit_log.append(
                    session,
                    actor="anna" if i % 2 else "bertil",
                    tag=AuditTag.PLAN_CREATE if i % 3 else AuditTag.USER_ADD,
                    subject=f"subject-{i}",
                    data={"i": i, "note": "räksmörgås", "when": T0 + timedelta(days=i)},
                    at=T0 + timedelta(minutes=i, microseconds=123),
                )
            )
    return entries


def _sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as connection:
        connection.execute(text(statement), params)


# ------------------------------------------------------------------ pure encoding


def test_canonical_encoding_is_compact_sorted_and_utc() -> None:
    entry = AuditEntry(
        seq=1,
        at=datetime.fromisoformat("2026-03-01T10:00:00+01:00"),
        actor="anna",
        tag="user:add",
        subject="bob",
        data={"role": "support", "bootstrap": False},
    )
    assert encode_entry(entry) == (
        '{"actor":"anna","at":"2026-03-01T09:00:00.000000Z",'
        '"data":{"bootstrap":false,"role":"support"},"seq":1,"subject":"bob","tag":"user:add"}'
    )
    assert chain_hash(GENESIS_HASH, entry) != chain_hash("f" * 64, entry)
    assert len(chain_hash(GENESIS_HASH, entry)) == 64


def test_normalise_data_reads_back_like_storage() -> None:
    data = normalise_data({"at": T0, "ids": (1, 2), "tags": frozenset({"b", "a"})})
    assert data == {"at": "2026-03-01T09:00:00.000000Z", "ids": [1, 2], "tags": ["a", "b"]}
    with pytest.raises(TypeError, match="cannot record bytes"):
        normalise_data({"raw": b"x"})


def test_message_ref_keeps_no_message_id_or_address() -> None:
    ref = message_ref("INBOX", 42, "<abc.kund@example.se>", 1234, T0)
    assert "kund" not in canonical_json(ref)
    assert ref == {
        "folder": "INBOX",
        "uid": 42,
        "message_id_sha256": hashlib.sha256(b"<abc.kund@example.se>").hexdigest(),
        "size": 1234,
        "date": "2026-03-01T09:00:00.000000Z",
    }
    assert message_ref("INBOX", 1, "", 0, None)["message_id_sha256"] is None


# ------------------------------------------------------------------ append and verify


def test_append_verify_head_query(store: Store) -> None:
    entries = _fill(store, 7)
    assert [e.seq for e in entries] == list(range(1, 8))
    result = audit_log.verify(store)
    assert (result.ok, result.count, result.first_bad_seq) == (True, 7, None)
    head = audit_log.head(store)
    assert head is not None
    assert head.seq == 7
    assert result.head == head
    # The returned entry hashes exactly like the stored one.
    prev = GENESIS_HASH
    for entry in entries:
        prev = chain_hash(prev, entry)
    assert prev == head.hash
    assert entries[0].data["when"] == "2026-03-01T09:00:00.000000Z"

    newest_first = audit_log.query(store)
    assert [e.seq for e in newest_first] == list(range(7, 0, -1))
    assert newest_first[-1] == entries[0]
    assert {e.actor for e in audit_log.query(store, actor="anna")} == {"anna"}
    assert [e.seq for e in audit_log.query(store, tag="user")] == [7, 4, 1]
    assert [e.seq for e in audit_log.query(store, tag="plan:create", limit=2)] == [6, 5]
    assert [e.seq for e in audit_log.query(store, since=T0 + timedelta(minutes=5))] == [7, 6]


def test_empty_log_verifies(store: Store) -> None:
    result = audit_log.verify(store)
    assert (result.ok, result.count, result.head) == (True, 0, None)
    assert audit_log.head(store) is None


def test_append_belongs_to_the_callers_transaction(store: Store) -> None:
    _fill(store, 2)

    class Boom(Exception):
        pass

    def change_that_fails() -> None:
        with store.transaction() as session:
            audit_log.append(
                session, actor="anna", tag=AuditTag.HOLD_PLACE, subject="x", data={}, at=T0
            )
            raise Boom

    with pytest.raises(Boom):
        change_that_fails()
    assert audit_log.verify(store).count == 2
    assert _fill(store, 1, start=2)[0].seq == 3
    assert audit_log.verify(store).ok


def test_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"), store.transaction() as session:
        audit_log.append(
            session,
            actor="anna",
            tag=AuditTag.HOLD_PLACE,
            subject="x",
            data={},
            at=datetime(2026, 1, 1),
        )


# ------------------------------------------------------------------ tampering

Tamper = Callable[[Store], None]


def _edit_data(store: Store) -> None:
    _sql(store, "UPDATE audit_events SET data = :data WHERE seq = 4", data='{"i":999}')


def _edit_actor(store: Store) -> None:
    _sql(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 4")


def _edit_time(store: Store) -> None:
    _sql(store, "UPDATE audit_events SET at = :at WHERE seq = 4", at=datetime(2020, 1, 1))


def _delete_row(store: Store) -> None:
    _sql(store, "DELETE FROM audit_events WHERE seq = 4")


def _delete_first(store: Store) -> None:
    _sql(store, "DELETE FROM audit_events WHERE seq = 1")


def _swap_rows(store: Store) -> None:
    _sql(store, "UPDATE audit_events SET seq = -1 WHERE seq = 4")
    _sql(store, "UPDATE audit_events SET seq = 4 WHERE seq = 6")
    _sql(store, "UPDATE audit_events SET seq = 6 WHERE seq = -1")


def _renumber_after_delete(store: Store) -> None:
    _sql(store, "DELETE FROM audit_events WHERE seq = 4")
    for seq in range(5, 9):
        _sql(store, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)


def _edit_hash(store: Store) -> None:
    _sql(store, "UPDATE audit_events SET hash = :h WHERE seq = 4", h="a" * 64)


def _not_json(store: Store) -> None:
    _sql(store, "UPDATE audit_events SET data = 'oops' WHERE seq = 4")


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        (_edit_data, 4, "changed after it was written"),
        (_edit_actor, 4, "changed after it was written"),
        (_edit_time, 4, "changed after it was written"),
        (_edit_hash, 4, "changed after it was written"),
        (_not_json, 4, "not a JSON object"),
        (_delete_row, 4, "entry 4 is missing"),
        (_delete_first, 1, "entry 1 is missing"),
        (_swap_rows, 4, "does not follow entry 3"),
        (_renumber_after_delete, 4, "does not follow entry 3"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_tampering_is_found_at_the_first_bad_seq(
    store: Store, tamper: Tamper, first_bad: int, words: str
) -> None:
    _fill(store, 8)
    tamper(store)
    result = audit_log.verify(store)
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.count == first_bad - 1
    assert result.problem is not None
    assert words in result.problem
    # `audit log` still reads a tampered log instead of crashing.
    assert audit_log.query(store)


def test_anchor_finds_truncation_and_rewritten_chain(store: Store) -> None:
    _fill(store, 6)
    anchor = audit_log.head(store)
    assert anchor is not None
    assert audit_log.verify(store, anchor=anchor).ok
    _fill(store, 2, start=6)
    assert audit_log.verify(store, anchor=anchor).ok

    # Removing the newest entries leaves a self-consistent chain; only the anchor shows it.
    _sql(store, "DELETE FROM audit_events WHERE seq >= 6")
    assert audit_log.verify(store).ok
    truncated = audit_log.verify(store, anchor=anchor)
    assert (truncated.ok, truncated.first_bad_seq) == (False, 6)
    assert truncated.problem is not None
    assert "were removed" in truncated.problem


def test_anchor_finds_a_chain_rebuilt_after_an_edit(store: Store) -> None:
    _fill(store, 5)
    anchor = audit_log.head(store)
    assert anchor is not None
    # A careful forger edits entry 2 and recomputes every hash after it.
    with store.engine.begin() as connection:
        rows = connection.execute(
            text("SELECT seq, at, actor, tag, subject, data FROM audit_events ORDER BY seq")
        ).all()
        prev = GENESIS_HASH
        for seq, at, actor, tag, subject, data in rows:
            if seq == 2:
                data = '{"i":1,"note":"forged"}'
            at_utc = (at if isinstance(at, datetime) else datetime.fromisoformat(at)).replace(
                tzinfo=UTC
            )
            entry = AuditEntry(seq, at_utc, actor, tag, subject, normalise_data(_loads(data)))
            new_hash = chain_hash(prev, entry)
            connection.execute(
                text("UPDATE audit_events SET data=:d, prev_hash=:p, hash=:h WHERE seq=:s"),
                {"d": canonical_json(entry.data), "p": prev, "h": new_hash, "s": seq},
            )
            prev = new_hash
    assert audit_log.verify(store).ok
    result = audit_log.verify(store, anchor=anchor)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem is not None
    assert "rewritten" in result.problem


def test_anchor_beyond_an_empty_log(store: Store) -> None:
    result = audit_log.verify(store, anchor=ChainHead(3, "b" * 64, T0))
    assert (result.ok, result.first_bad_seq) == (False, 1)


def _loads(value: str) -> dict[str, Any]:
    loaded = json.loads(value)
    assert isinstance(loaded, dict)
    return loaded


# ------------------------------------------------------------------ concurrency


def test_the_head_is_read_under_the_writers_lock(store: Store) -> None:
    """The lock statement runs before any read of the chain, inside the same transaction."""
    _fill(store, 1)
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        _fill(store, 1, start=1)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    touching = [s for s in statements if "audit_events" in s or "advisory" in s]
    lock_word = "pg_advisory_xact_lock" if store.engine.dialect.name == "postgresql" else "update"
    assert lock_word in touching[0]
    assert touching[1].startswith("select")
    assert touching[2].startswith("insert")


def test_the_lock_keeps_other_writers_out_until_commit(
    store: Store, store_target: StoreTarget
) -> None:
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        if store_target.backend == "sqlite":
            other = sqlite3.connect(store_target.url.removeprefix("sqlite:///"), timeout=0.2)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
        else:
            with store.engine.connect() as other_pg:
                got = other_pg.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"),
                    {"k": audit_queries.CHAIN_LOCK_KEY},
                ).scalar_one()
                other_pg.rollback()
            assert got is False


def _append_many(target: StoreTarget, actor: str, count: int, start: Any) -> None:
    """Runs in a spawned process: ``count`` appends, each in its own transaction."""
    opened = target.open()
    try:
        start.wait(60)
        for i in range(count):
            with opened.transaction() as session:
                audit_log.append(
                    session,
                    actor=actor,
                    tag=AuditTag.SYNC_SUMMARY,
                    subject=f"{actor}-{i}",
                    data={"i": i},
                    at=datetime.now(UTC),
                )
    finally:
        opened.close()


def test_two_processes_appending_never_fork_the_chain(
    store: Store, store_target: StoreTarget
) -> None:
    _fill(store, 1)  # the schema exists and the chain has a head before the race starts
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_append_many, args=(store_target, name, 50, start))
        for name in ("writer-a", "writer-b")
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0, 0]

    result = audit_log.verify(store)
    assert (result.ok, result.count) == (True, 101), result.problem
    entries = audit_log.query(store)
    assert sorted(e.seq for e in entries) == list(range(1, 102))
    by_actor: dict[str, list[int]] = {}
    for entry in reversed(entries):
        by_actor.setdefault(entry.actor, []).append(int(entry.data["i"]))
    assert by_actor["writer-a"] == list(range(50))
    assert by_actor["writer-b"] == list(range(50))
