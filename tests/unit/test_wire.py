"""Exact protocol bytes for what we put on an IMAP command line."""

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhygiene.errors import InputError
from mailhygiene.imap.wire import (
    AscendingUids,
    chunked_uid_sets,
    iter_uid_set,
    keyword_atom,
    parse_uid_set,
    quote_mailbox,
    sorted_unique_uids,
    strictly_ascending,
    uid_array,
    uid_set,
)


def test_uid_set_compresses_runs():
    assert uid_set([7, 1, 2, 3, 5, 6, 10]) == "1:3,5:7,10"


def test_uid_set_refuses_empty():
    with pytest.raises(ValueError, match="empty"):
        uid_set([])


@given(st.sets(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=300))
def test_uid_set_round_trips(uids):
    assert parse_uid_set(uid_set(uids)) == sorted(uids)


def test_chunks_stay_under_the_command_line_limit():
    uids = list(range(1, 200_000, 2))  # no runs: worst case for the set's length
    chunks = list(chunked_uid_sets(uids, max_uids=5000))
    assert sum(len(batch) for batch, _ in chunks) == len(uids)
    assert all(len(text) <= 8000 for _, text in chunks)


def test_chunks_from_an_array_are_lists_of_its_slices():
    uids = uid_array(range(1, 12_001))
    chunks = list(chunked_uid_sets(uids, max_uids=5000))
    assert [text for _, text in chunks] == ["1:5000", "5001:10000", "10001:12000"]
    assert all(type(batch) is list for batch, _ in chunks)
    assert [uid for batch, _ in chunks for uid in batch] == list(uids)


def test_unsorted_or_repeated_uids_are_still_chunked_sorted_and_unique():
    uids = uid_array([9, 3, 3, 7, 1, 9, 2])
    assert list(chunked_uid_sets(uids, max_uids=2)) == [
        ([1, 2], "1:2"),
        ([3, 7], "3,7"),
        ([9], "9"),
    ]
    assert list(chunked_uid_sets([5, 4, 4], max_uids=10)) == [([4, 5], "4:5")]


@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=400), st.integers(1, 50))
def test_chunks_ascend_without_duplicates_whatever_the_input(uids, max_uids):
    for given_uids in (uids, uid_array(uids), sorted(set(uids))):
        chunks = list(chunked_uid_sets(given_uids, max_uids=max_uids))
        assert [uid for batch, _ in chunks for uid in batch] == sorted(set(uids))
        for batch, text in chunks:
            assert 0 < len(batch) <= max_uids
            assert text == uid_set(batch)


@pytest.mark.parametrize(
    ("uids", "expected"),
    [([], True), ([4], True), ([1, 2, 9], True), ([1, 1], False), ([2, 1], False)],
)
def test_strictly_ascending(uids, expected):
    assert strictly_ascending(uids) is expected
    assert strictly_ascending(uid_array(uids)) is expected


def test_sorted_unique_uids_keeps_an_ascending_array_as_it_is():
    uids = uid_array([1, 5, 6])
    assert sorted_unique_uids(uids) is uids


def test_sorted_unique_uids_sorts_and_deduplicates_otherwise():
    result = sorted_unique_uids(uid_array([6, 1, 5, 1]))
    assert result == array("Q", [1, 5, 6])
    assert result.itemsize == 8


def test_iter_uid_set_expands_lazily_as_parse_uid_set_does():
    expanded = iter_uid_set("1:3,,7,10:8")
    assert next(expanded) == 1
    assert [1, *expanded] == parse_uid_set("1:3,,7,10:8") == [1, 2, 3, 7, 8, 9, 10]
    with pytest.raises(ValueError):
        list(iter_uid_set("1,x"))


@given(
    st.lists(st.integers(min_value=1, max_value=500), max_size=100),
    st.lists(st.integers(min_value=-5, max_value=505), max_size=50),
)
def test_ascending_uids_membership_matches_a_set(uids, probes):
    ordered = uid_array(sorted(set(uids)))
    lookup = AscendingUids(ordered)
    for probe in probes:
        assert (probe in lookup) == (probe in set(uids))
    assert "1" not in lookup


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b'"INBOX"'),
        ("Archive/2024", b'"Archive/2024"'),
        ('Say "hi"', b'"Say \\"hi\\""'),
        ("back\\slash", b'"back\\\\slash"'),
        ("Reklamationer/Åsa", b'"Reklamationer/&AMU-sa"'),
    ],
)
def test_quote_mailbox(name, wire):
    assert quote_mailbox(name) == wire


@pytest.mark.parametrize("name", ["INBOX\r\nA1 DELETE INBOX", "x\ny", "nul\x00"])
def test_quote_mailbox_refuses_line_breaks(name):
    with pytest.raises(InputError, match="line break"):
        quote_mailbox(name)


@given(st.text(max_size=40))
def test_quoted_mailbox_never_contains_a_line_break(name):
    try:
        wire = quote_mailbox(name)
    except InputError:
        return
    assert b"\r" not in wire
    assert b"\n" not in wire
    assert b"\x00" not in wire


@pytest.mark.parametrize("keyword", ["$Reklamation", "$Reklamation_REK-2025-0042", "Junk"])
def test_keyword_atom_accepts_atoms(keyword):
    assert keyword_atom(keyword) == keyword.encode()


@pytest.mark.parametrize(
    "keyword", ["", "two words", "a)b", 'q"', "x\r\nA1 EXPUNGE", "pct%", "star*", "åäö", "\\Seen]"]
)
def test_keyword_atom_refuses_non_atoms(keyword):
    with pytest.raises(InputError, match="not a valid IMAP keyword"):
        keyword_atom(keyword)
