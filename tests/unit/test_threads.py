"""Conversation threading: References, Outlook Thread-Index, guarded subject fallback."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailhygiene.threads import (
    DEFAULT_SUBJECT_WINDOW,
    SubjectEntry,
    ThreadInput,
    ThreadRegistry,
    ThreadState,
    assign_threads,
    is_generic_subject,
    is_reply_subject,
    normalise_subject,
    subject_key,
    thread_id_for,
    thread_index_conversation,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def msg(
    key: int,
    message_id: str = "",
    *,
    refs: tuple[str, ...] = (),
    irt: str = "",
    ti: str = "",
    subject: str = "",
    day: float | None = 0,
) -> ThreadInput:
    return ThreadInput(
        key=key,
        message_id=message_id,
        in_reply_to=irt,
        references=refs,
        thread_index=ti,
        subject=subject,
        date=None if day is None else T0 + timedelta(days=day),
    )


def thread_index(conversation: int, replies: int = 0) -> str:
    """A well-formed Thread-Index: 22-byte header block plus 5-byte child blocks."""
    header = b"\x01" + conversation.to_bytes(5, "big") + bytes(range(16))
    return base64.b64encode(header + b"\x00\x00\x01\x02\x03" * replies).decode()


def partition(assigned: dict[int, str]) -> set[frozenset[int]]:
    groups: dict[str, set[int]] = {}
    for key, thread in assigned.items():
        groups.setdefault(thread, set()).add(key)
    return {frozenset(keys) for keys in groups.values()}


# -- subject normalisation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Trasig leverans", "trasig leverans"),
        ("Re: Trasig leverans", "trasig leverans"),
        ("RE: RE: re:Trasig leverans", "trasig leverans"),
        ("SV: Sv: Trasig leverans", "trasig leverans"),
        ("VB: SV: Trasig leverans", "trasig leverans"),
        ("Vs: Trasig leverans", "trasig leverans"),
        ("AW: WG: Defekte Lieferung", "defekte lieferung"),
        ("Antw: Kapotte levering", "kapotte levering"),
        ("Fwd: Fw: FW: Broken delivery", "broken delivery"),
        ("Re[2]: Broken delivery", "broken delivery"),
        ("Re (3): Broken delivery", "broken delivery"),
        ("RE : Livraison cassée", "livraison cassée"),
        ("TR: Livraison cassée", "livraison cassée"),
        ("[promix] Re: [promix] Sv: Trasig leverans", "trasig leverans"),
        ("[EXTERNAL] Trasig leverans", "trasig leverans"),
        ("Re：Trasig leverans", "trasig leverans"),  # full-width colon
        ("  Trasig\u00a0 \t leverans  ", "trasig leverans"),
        ("TRASIG LEVERANS", "trasig leverans"),
        ("Straße", "strasse"),
    ],
)
def test_normalise_subject_strips_markers_and_folds(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


@pytest.mark.parametrize(
    "subject",
    [
        "[Ticket 123] Trasig leverans",  # a tag with a number is information
        "[REK-2025-0042] Trasig leverans",
        "Regarding: the delivery",  # "Regarding" is not a marker
        "Svar på fråga",  # no colon: not a marker
        "Trasig leverans, re: order 77",  # markers only at the start
    ],
)
def test_normalise_subject_keeps_what_is_not_a_marker(subject: str) -> None:
    assert normalise_subject(subject) == subject.casefold()


@pytest.mark.parametrize(
    "subject",
    ["", "   ", "Re:", "SV: ", "hej", "Hej!", "HEJ HEJ", "(no subject)", "(inget ämne)",
     "Re: test", "abc", "a b c", "Fråga", "Tack!", "!!!!!!!!", "[promix]"],
)  # fmt: skip
def test_generic_subjects(subject: str) -> None:
    assert is_generic_subject(normalise_subject(subject))
    assert subject_key(subject) is None


def test_specific_subject_is_not_generic() -> None:
    assert not is_generic_subject("trasig leverans")
    assert subject_key("SV: Trasig leverans") == "trasig leverans"


# -- Thread-Index --------------------------------------------------------------------


def test_thread_index_conversation_is_the_header_block() -> None:
    root = thread_index_conversation(thread_index(7))
    assert root is not None
    assert len(root) == 44
    assert thread_index_conversation(thread_index(7, replies=3)) == root
    assert thread_index_conversation(thread_index(8)) != root


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "not base64!!",
        "AQHZ",  # valid base64, too short
        base64.b64encode(b"\x01" * 23).decode(),  # 23 bytes: not 22 + 5n
        thread_index(7)[:-2],  # broken padding
    ],
)
def test_invalid_thread_index_is_ignored(value: str) -> None:
    assert thread_index_conversation(value) is None


def test_thread_index_whitespace_from_folding_is_ignored() -> None:
    value = thread_index(7, replies=2)
    folded = value[:10] + "\r\n " + value[10:]
    assert thread_index_conversation(folded) == thread_index_conversation(value)


# -- References / In-Reply-To --------------------------------------------------------


def test_reply_chain_is_one_thread() -> None:
    result = assign_threads(
        [
            msg(1, "a@x", subject="Trasig leverans"),
            msg(2, "b@x", irt="a@x", refs=("a@x",), subject="Re: Trasig leverans", day=1),
            msg(3, "c@x", irt="b@x", refs=("a@x", "b@x"), day=2),
        ]
    )
    assert partition(result) == {frozenset({1, 2, 3})}


def test_missing_parent_still_connects_siblings() -> None:
    result = assign_threads(
        [
            msg(1, "b@x", refs=("gone@x",), day=1),
            msg(2, "c@x", irt="gone@x", day=2),
            msg(3, "d@x", day=3),
        ]
    )
    assert partition(result) == {frozenset({1, 2}), frozenset({3})}


def test_reference_cycle_is_harmless() -> None:
    result = assign_threads(
        [
            msg(1, "a@x", refs=("b@x",)),
            msg(2, "b@x", refs=("c@x",)),
            msg(3, "c@x", refs=("a@x",)),
            msg(4, "d@x", refs=("d@x",)),  # names itself
        ]
    )
    assert partition(result) == {frozenset({1, 2, 3}), frozenset({4})}


def test_duplicate_message_ids_are_one_thread() -> None:
    """The same message in INBOX and Archive (two rows) is one conversation."""
    result = assign_threads([msg(1, "a@x", subject="Hej"), msg(2, "a@x", subject="Hej")])
    assert result[1] == result[2]


def test_messages_without_message_id_are_their_own_threads() -> None:
    result = assign_threads([msg(1), msg(2), msg(3, refs=("a@x",)), msg(4, "a@x")])
    assert partition(result) == {frozenset({1}), frozenset({2}), frozenset({3, 4})}


def test_empty_reference_entries_are_ignored() -> None:
    result = assign_threads([msg(1, "a@x", refs=("", "")), msg(2, "b@x", irt="")])
    assert partition(result) == {frozenset({1}), frozenset({2})}


# -- Outlook -------------------------------------------------------------------------


def test_outlook_only_thread_by_thread_index() -> None:
    result = assign_threads(
        [
            msg(1, "a@x", ti=thread_index(1), subject="Möte"),
            msg(2, "b@x", ti=thread_index(1, replies=1), subject="SV: Möte", day=1),
            msg(3, "c@x", ti=thread_index(1, replies=2), subject="Ändrad tid", day=2),
            msg(4, "d@x", ti=thread_index(2), subject="Möte", day=1),
        ]
    )
    assert partition(result) == {frozenset({1, 2, 3}), frozenset({4})}


def test_thread_index_joins_a_reply_that_lost_its_references() -> None:
    """Gmail starts, Outlook replies (References + new Thread-Index), Exchange strips
    the References of the next reply: the Thread-Index still connects it."""
    outlook = thread_index(9)
    result = assign_threads(
        [
            msg(1, "a@x"),
            msg(2, "b@x", irt="a@x", refs=("a@x",), ti=outlook, day=1),
            msg(3, "c@x", ti=thread_index(9, replies=1), day=2),
        ]
    )
    assert partition(result) == {frozenset({1, 2, 3})}


def test_invalid_thread_index_does_not_link_or_fail() -> None:
    result = assign_threads([msg(1, "a@x", ti="!!!!"), msg(2, "b@x", ti="!!!!")])
    assert partition(result) == {frozenset({1}), frozenset({2})}


# -- subject fallback ----------------------------------------------------------------


def test_subject_links_new_messages_within_the_window() -> None:
    result = assign_threads(
        [
            msg(1, "a@x", subject="Trasig leverans"),
            msg(2, "b@x", subject="SV: trasig leverans", day=29),
            msg(3, "c@x", subject="Trasig leverans", day=29 + 31),  # 31 days after #2
        ]
    )
    assert partition(result) == {frozenset({1, 2}), frozenset({3})}


def test_subject_window_is_inclusive_and_configurable() -> None:
    pair = [
        msg(1, "a@x", subject="Trasig leverans"),
        msg(2, "b@x", subject="SV: Trasig leverans", day=30),
    ]
    assert len(partition(assign_threads(pair))) == 1
    short = assign_threads(pair, subject_window=timedelta(days=29))
    assert len(partition(short)) == 2


@pytest.mark.parametrize(("candidate_day", "reply_day"), [(0, 30), (30, 0)])
def test_window_bound_is_inclusive_on_both_sides(candidate_day: int, reply_day: int) -> None:
    result = assign_threads(
        [
            msg(1, "a@x", subject="SV: Trasig leverans", day=candidate_day),
            msg(2, "c@x", refs=("b@x",), subject="SV: Trasig leverans", day=reply_day),
        ]
    )
    assert result[1] == result[2]


def test_subject_links_chain_through_nearest_messages() -> None:
    result = assign_threads(
        [msg(k, f"m{k}@x", subject="SV: Trasig leverans", day=25 * k) for k in range(4)]
    )
    assert len(partition(result)) == 1


def test_subject_candidate_joins_an_existing_reply_thread() -> None:
    """A reply that lost its headers, with the subject of a running conversation, joins it."""
    result = assign_threads(
        [
            msg(1, "a@x", subject="Trasig leverans"),
            msg(2, "b@x", refs=("a@x",), subject="Re: Trasig leverans", day=40),
            msg(3, "c@x", subject="SV: Trasig leverans", day=50),  # 50 days after #1, 10 after #2
        ]
    )
    assert partition(result) == {frozenset({1, 2, 3})}


def test_messages_with_references_never_link_by_subject() -> None:
    result = assign_threads(
        [
            msg(1, "b@x", refs=("a@x",), subject="Re: Trasig leverans"),
            msg(2, "d@x", refs=("c@x",), subject="Re: Trasig leverans", day=1),
            msg(3, "e@x", ti=thread_index(3), subject="Trasig leverans", day=1),
        ]
    )
    assert len(partition(result)) == 3


@pytest.mark.parametrize("subject", ["", "Hej", "(no subject)", "Re: hej", "Tack", "ok"])
def test_generic_subjects_never_merge(subject: str) -> None:
    result = assign_threads([msg(1, "a@x", subject=subject), msg(2, "b@x", subject=subject)])
    assert len(partition(result)) == 2


def test_dateless_messages_never_link_by_subject() -> None:
    result = assign_threads(
        [
            msg(1, "a@x", subject="Trasig leverans"),
            msg(2, "b@x", subject="Trasig leverans", day=None),
        ]
    )
    assert len(partition(result)) == 2


def test_dense_subject_is_linked_without_quadratic_work() -> None:
    """20,000 header-less replies with one subject in a month: one thread, quickly."""
    messages = [
        msg(k, f"m{k}@x", subject="SV: Orderbekräftelse 4711", day=k / 1000) for k in range(20_000)
    ]
    assert len(set(assign_threads(messages).values())) == 1


def test_a_recurring_subject_without_a_reply_marker_never_chains() -> None:
    """A weekly newsletter or one question asked by many: each mail its own thread.

    Chained, a case linked to one of them would keep years of unrelated mail."""
    weekly = [msg(k, f"n{k}@x", subject="Veckobrev från Promix", day=7 * k) for k in range(200)]
    daily = [msg(1000 + k, f"o{k}@x", subject="Orderbekräftelse", day=k) for k in range(400)]
    result = assign_threads(weekly + daily)
    assert len(partition(result)) == 600


def test_a_new_mail_with_a_running_conversations_subject_starts_its_own_thread() -> None:
    result = assign_threads(
        [
            msg(1, "a@x", subject="Trasig leverans"),
            msg(2, "b@x", refs=("a@x",), subject="Re: Trasig leverans", day=1),
            msg(3, "c@x", subject="Trasig leverans", day=2),
        ]
    )
    assert partition(result) == {frozenset({1, 2}), frozenset({3})}


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("SV: Trasig leverans", True),
        ("Re: x", True),
        ("[promix] AW: x", True),
        ("Fwd:x", True),
        ("Re[2]: x", True),
        ("Trasig leverans", False),
        ("[REK-2025-0042] Trasig leverans", False),
        ("[promix] Veckobrev", False),
        ("Svar om leverans", False),
        ("", False),
    ],
)
def test_is_reply_subject(subject: str, reply: bool) -> None:
    assert is_reply_subject(subject) is reply


# -- thread ids ----------------------------------------------------------------------


def test_thread_id_format_is_pinned() -> None:
    """Ids are stored and linked to cases: changing them silently would orphan links."""
    stamped = ThreadInput(1, "abc@example.com", date=datetime(2025, 1, 14, 9, 30, tzinfo=UTC))
    assert thread_id_for(stamped) == "20250114T093000Z-1ead36106161efffa5bd"
    assert thread_id_for(ThreadInput(7, "")) == "nodate-60ccc56d57d0d3cb4be5"


def test_thread_id_uses_utc() -> None:
    local = datetime(2025, 1, 14, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert thread_id_for(ThreadInput(1, "abc@example.com", date=local)).startswith(
        "20250114T093000Z-"
    )


def test_thread_id_is_that_of_the_oldest_message() -> None:
    messages = [
        msg(1, "b@x", refs=("a@x",), day=3),
        msg(2, "a@x", day=1),
        msg(3, "c@x", refs=("a@x",), day=2),
    ]
    result = assign_threads(messages)
    assert set(result.values()) == {thread_id_for(messages[1])}


def test_dated_messages_win_over_dateless() -> None:
    messages = [msg(1, "a@x", day=None), msg(2, "b@x", refs=("a@x",), day=5)]
    assert assign_threads(messages)[1] == thread_id_for(messages[1])


def test_thread_ids_fit_the_index_column() -> None:
    long_id = "x" * 900 + "@example.com"
    thread = assign_threads([msg(1, long_id)])[1]
    assert len(thread) <= 100


def test_ids_are_independent_of_order_and_run() -> None:
    messages = [
        msg(1, "a@x", subject="Trasig leverans"),
        msg(2, "b@x", refs=("a@x",), day=1),
        msg(3, "c@x", subject="Trasig leverans", day=2),
        msg(4, "d@x", ti=thread_index(4)),
        msg(5, "e@x", ti=thread_index(4, 1), day=3),
        msg(6),
    ]
    expected = assign_threads(messages)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = messages[:]
        rng.shuffle(shuffled)
        assert assign_threads(shuffled) == expected


# -- incremental ---------------------------------------------------------------------


def test_reply_joining_two_threads_merges_them_and_the_older_survives() -> None:
    registry = ThreadRegistry()
    first = registry.add([msg(1, "a@x", day=0), msg(2, "b@x", day=1)])
    old_a, old_b = first.assigned[1], first.assigned[2]
    assert old_a < old_b
    assert first.merges == ()

    update = registry.add([msg(3, "c@x", refs=("a@x", "b@x"), day=2)])
    assert update.assigned == {3: old_a}
    assert update.merges == ((old_b, old_a),)
    assert registry.resolve(old_b) == old_a


def test_resolve_follows_and_compresses_merge_chains() -> None:
    registry = ThreadRegistry(ThreadState(renamed={"c": "b", "b": "a"}))
    assert registry.resolve("c") == "a"
    assert registry.resolve("a") == "a"
    assert registry.state.renamed == {"c": "a", "b": "a"}


def test_older_message_arriving_late_renames_the_thread() -> None:
    """INBOX (the customer's reply) is synced before Sent (our original)."""
    registry = ThreadRegistry()
    reply = registry.add([msg(1, "b@x", refs=("a@x",), day=5)])
    original = registry.add([msg(2, "a@x", day=1)])
    assert original.merges == ((reply.assigned[1], original.assigned[2]),)


def test_plain_reply_keeps_the_thread_id() -> None:
    registry = ThreadRegistry()
    first = registry.add([msg(1, "a@x", subject="Trasig leverans")])
    update = registry.add([msg(2, "b@x", refs=("a@x",), subject="SV: Trasig leverans", day=1)])
    assert update.assigned == {2: first.assigned[1]}
    assert update.merges == ()


def test_adding_the_same_messages_again_changes_nothing() -> None:
    messages = [
        msg(1, "a@x", subject="Trasig leverans"),
        msg(2, "b@x", refs=("a@x",), day=1),
        msg(3, "c@x", subject="Trasig leverans", day=2),
    ]
    registry = ThreadRegistry()
    first = registry.add(messages)
    again = registry.add(messages)
    assert again.assigned == first.assigned
    assert again.merges == ()


def test_subject_link_to_an_existing_thread() -> None:
    registry = ThreadRegistry()
    first = registry.add([msg(1, "a@x", subject="Trasig leverans")])
    update = registry.add([msg(2, "b@x", subject="SV: Trasig leverans", day=10)])
    assert update.assigned == {2: first.assigned[1]}
    assert update.merges == ()
    far = registry.add([msg(3, "c@x", subject="Trasig leverans", day=100)])
    assert far.assigned[3] != first.assigned[1]


def test_new_reply_links_to_an_existing_subject_candidate() -> None:
    """Old candidate, new reply of another conversation with that subject: one thread."""
    registry = ThreadRegistry()
    first = registry.add([msg(1, "a@x", subject="SV: Trasig leverans")])
    update = registry.add([msg(2, "c@x", refs=("b@x",), subject="Re: Trasig leverans", day=3)])
    assert update.assigned == {2: first.assigned[1]}


def test_state_from_the_database_gives_the_batch_result() -> None:
    old = [
        msg(1, "a@x", subject="Trasig leverans"),
        msg(2, "b@x", refs=("a@x",), ti=thread_index(5), day=1),
        msg(3, "z@x", subject="Annat ärende", day=2),
    ]
    new = [
        msg(4, "c@x", ti=thread_index(5, 1), day=3),
        msg(5, "d@x", subject="Annat ärende", day=4),
        msg(6, "e@x", refs=("z@x", "a@x"), day=5),
    ]
    stored = assign_threads(old)
    registry = ThreadRegistry.from_assigned((m, stored[m.key]) for m in old)
    update = registry.add(new)
    batch = assign_threads(old + new)
    assert update.assigned == {m.key: batch[m.key] for m in new}
    assert {registry.resolve(stored[m.key]) for m in old} <= set(batch.values())
    for old_id, surviving in update.merges:
        assert surviving == batch[next(m.key for m in old if stored[m.key] == old_id)]


def test_state_can_be_given_as_plain_dictionaries() -> None:
    state = ThreadState(
        ids={"a@x": "20250101T000000Z-aaaa", "parent@x": "20250101T000000Z-aaaa"},
        conversations={thread_index_conversation(thread_index(1)) or "": "20240101T000000Z-bbbb"},
        subjects={"trasig leverans": [SubjectEntry(T0, "20200101T000000Z-cccc", candidate=True)]},
    )
    registry = ThreadRegistry(state)
    update = registry.add(
        [
            msg(1, "n1@x", refs=("parent@x",), day=1),
            msg(2, "n2@x", ti=thread_index(1, 2), day=1),
            msg(3, "n3@x", subject="Trasig leverans", day=1),
        ]
    )
    assert update.assigned == {
        1: "20250101T000000Z-aaaa",
        2: "20240101T000000Z-bbbb",
        3: "20200101T000000Z-cccc",
    }


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="duplicate keys"):
        assign_threads([msg(1, "a@x"), msg(1, "b@x")])
    with pytest.raises(ValueError, match="tz-aware"):
        ThreadInput(1, "a@x", date=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="negative"):
        ThreadRegistry(subject_window=timedelta(days=-1))


def test_default_window_is_thirty_days() -> None:
    assert timedelta(days=30) == DEFAULT_SUBJECT_WINDOW
