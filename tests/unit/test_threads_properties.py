"""Threading invariants, checked by hypothesis against a naive reference model.

The reference below is the rule text translated literally — every pair of messages,
O(n²) — so the fast union-find and the incremental registry are checked against the
specification rather than against themselves.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhygiene.threads import (
    ThreadInput,
    ThreadRegistry,
    assign_threads,
    is_reply_subject,
    normalise_subject,
    subject_key,
    thread_id_for,
    thread_index_conversation,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
WINDOW = timedelta(days=30)
T0 = datetime(2025, 1, 1, tzinfo=UTC)

IDS = [f"{name}@example.com" for name in "abcdefgh"]
SUBJECTS = [
    "Trasig leverans",
    "SV: Trasig leverans",
    "Re: Re: trasig leverans",
    "[promix] AW: Trasig LEVERANS",
    "Faktura 4711",
    "Fwd: Faktura 4711",
    "Hej",
    "",
    "(no subject)",
    "Re:",
]


def _thread_index(conversation: int, replies: int) -> str:
    header = b"\x01" + conversation.to_bytes(5, "big") + bytes(16)
    return base64.b64encode(header + b"\x07" * 5 * replies).decode()


THREAD_INDEXES = st.one_of(
    st.just(""),
    st.builds(_thread_index, st.integers(0, 2), st.integers(0, 2)),
    st.sampled_from(["garbage!", "AQHZ", "===="]),
)
DATES = st.one_of(
    st.none(),
    st.builds(
        lambda minutes, offset: (T0 + timedelta(minutes=minutes)).astimezone(
            timezone(timedelta(hours=offset))
        ),
        st.integers(0, 120 * 24 * 60).map(lambda m: m - m % 720),  # often equal seconds
        st.integers(-12, 14),
    ),
)


MESSAGE_FIELDS = st.tuples(
    st.sampled_from(["", *IDS]),  # message_id
    st.sampled_from(["", "", *IDS]),  # in_reply_to
    st.lists(st.sampled_from(["", *IDS]), max_size=3).map(tuple),  # references
    THREAD_INDEXES,
    st.sampled_from(SUBJECTS),
    DATES,
)


def message_sets() -> st.SearchStrategy[list[ThreadInput]]:
    """Up to 14 messages over 8 ids: dense enough for cycles, duplicates and merges."""
    return st.lists(MESSAGE_FIELDS, max_size=14).map(
        lambda rows: [ThreadInput(key, *fields) for key, fields in enumerate(rows)]
    )


def reference_threads(messages: list[ThreadInput]) -> dict[int, str]:
    """The rules, literally: pairwise links, connected components, smallest id wins."""
    group = {m.key: m.key for m in messages}

    def find(key: int) -> int:
        while group[key] != key:
            key = group[key]
        return key

    def link(a: ThreadInput, b: ThreadInput) -> None:
        group[find(a.key)] = find(b.key)

    def named(m: ThreadInput) -> set[str]:
        return {m.message_id, m.in_reply_to, *m.references} - {""}

    def candidate(m: ThreadInput) -> bool:
        no_refs = not m.in_reply_to and not any(m.references)
        header_less = no_refs and thread_index_conversation(m.thread_index) is None
        return header_less and is_reply_subject(m.subject)

    facts = [
        (
            m,
            named(m),
            thread_index_conversation(m.thread_index),
            candidate(m),
            subject_key(m.subject),
        )
        for m in messages
    ]
    for a, a_named, a_conversation, a_candidate, a_subject in facts:
        for b, b_named, b_conversation, _, b_subject in facts:
            if a_named & b_named:
                link(a, b)
            if a_conversation is not None and a_conversation == b_conversation:
                link(a, b)
            if (
                a_candidate
                and a.date is not None
                and b.date is not None
                and a_subject is not None
                and a_subject == b_subject
                and abs(a.date - b.date) <= WINDOW
            ):
                link(a, b)
    best: dict[int, str] = {}
    for m in messages:
        root = find(m.key)
        best[root] = min(best.get(root, "~"), thread_id_for(m))
    return {m.key: best[find(m.key)] for m in messages}


@SETTINGS
@given(message_sets())
def test_batch_matches_the_reference_model(messages: list[ThreadInput]) -> None:
    assert assign_threads(messages, subject_window=WINDOW) == reference_threads(messages)


@SETTINGS
@given(message_sets(), st.randoms(use_true_random=False))
def test_order_independence(messages: list[ThreadInput], rnd: random.Random) -> None:
    shuffled = messages[:]
    rnd.shuffle(shuffled)
    assert assign_threads(shuffled) == assign_threads(messages)


@SETTINGS
@given(message_sets())
def test_idempotence(messages: list[ThreadInput]) -> None:
    registry = ThreadRegistry()
    first = registry.add(messages)
    again = registry.add(messages)
    assert first.assigned == assign_threads(messages)
    assert again.assigned == first.assigned
    assert again.merges == ()


@SETTINGS
@given(message_sets(), st.lists(st.integers(0, 14), max_size=4))
def test_incremental_equals_batch_for_any_split(
    messages: list[ThreadInput], cuts: list[int]
) -> None:
    bounds = [0, *sorted(min(cut, len(messages)) for cut in cuts), len(messages)]
    registry = ThreadRegistry(subject_window=WINDOW)
    held: dict[int, str] = {}  # what a caller's database would hold
    for start, end in pairwise(bounds):
        update = registry.add(messages[start:end])
        renames = dict(update.merges)
        assert not set(renames.values()) & set(renames)  # final targets, no chains
        assert set(renames) <= set(held.values())  # only ids the caller has seen
        held = {key: renames.get(thread, thread) for key, thread in held.items()}
        held.update(update.assigned)
        assert not set(renames) & set(held.values())
    assert held == assign_threads(messages, subject_window=WINDOW)


@SETTINGS
@given(message_sets(), st.integers(0, 14))
def test_loaded_state_equals_batch(messages: list[ThreadInput], cut: int) -> None:
    """Load what the database holds for the old messages, thread the new ones.

    Old messages are passed as ids only, plus in full only when dated near the new
    messages — the slice ``from_assigned`` documents as sufficient.
    """
    old, new = messages[:cut], messages[cut:]
    stored = assign_threads(old, subject_window=WINDOW)
    dates = [m.date for m in new if m.date is not None]
    rows: list[tuple[ThreadInput, str]] = []
    for m in old:
        ids_only = ThreadInput(m.key, m.message_id, m.in_reply_to, m.references, m.thread_index)
        rows.append((ids_only, stored[m.key]))
        if dates and m.date is not None and min(dates) - WINDOW <= m.date <= max(dates) + WINDOW:
            rows.append((m, stored[m.key]))
    registry = ThreadRegistry.from_assigned(rows, subject_window=WINDOW)
    update = registry.add(new)
    batch = assign_threads(messages, subject_window=WINDOW)
    assert update.assigned == {m.key: batch[m.key] for m in new}
    renames = dict(update.merges)
    assert {m.key: renames.get(stored[m.key], stored[m.key]) for m in old} == {
        m.key: batch[m.key] for m in old
    }


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(max_size=40))
def test_normalise_subject_is_idempotent_and_total(subject: str) -> None:
    once = normalise_subject(subject)
    assert normalise_subject(once) == once
    assert once == once.strip()
