"""Exact protocol bytes for what we put on an IMAP command line."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhygiene.errors import InputError
from mailhygiene.imap.wire import (
    chunked_uid_sets,
    keyword_atom,
    parse_uid_set,
    quote_mailbox,
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
