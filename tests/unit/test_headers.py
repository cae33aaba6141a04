"""Header parsing on the indexing hot path: fast forms and forgiving fallbacks."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhygiene.imap.headers import (
    build_from_fetch,
    build_indexed_message,
    identity_from_fetch,
    message_ids,
    parse_addresses,
    parse_date_header,
    parse_internaldate,
)


def build(block: bytes):
    return build_indexed_message(
        uid=1, flags=("\\Seen",), internal_date=None, size=10, modseq=None, header_block=block
    )


def test_internaldate_to_utc():
    assert parse_internaldate(b"03-Mar-2025 10:00:00 +0100") == datetime(2025, 3, 3, 9, tzinfo=UTC)
    assert parse_internaldate(b" 3-Mar-2025 10:00:00 -0230") == datetime(
        2025, 3, 3, 12, 30, tzinfo=UTC
    )
    assert parse_internaldate(b"garbage") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 3 Mar 2025 10:00:00 +0100", datetime(2025, 3, 3, 9, tzinfo=UTC)),
        ("3 Mar 2025 10:00 +0000", datetime(2025, 3, 3, 10, tzinfo=UTC)),
        ("Mon, 03 Mar 2025 10:00:00 GMT", datetime(2025, 3, 3, 10, tzinfo=UTC)),
        ("Mon, 3 Mar 2025 10:00:00 +0100 (CET)", datetime(2025, 3, 3, 9, tzinfo=UTC)),
        ("Mon, 3 Mar 2025 10:00:00 -0000", datetime(2025, 3, 3, 10, tzinfo=UTC)),
    ],
)
def test_date_header_forms(value, expected):
    assert parse_date_header(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "Mon, 32 Foo 2025", "", "99 Jan 99999 1:1 +9999"])
def test_unparseable_dates_are_none(value):
    assert parse_date_header(value) is None


def test_addresses_fast_and_slow_forms():
    assert parse_addresses("Anna <Anna@Example.SE>") == (("Anna", "anna@example.se"),)
    assert parse_addresses("anna@example.se") == (("", "anna@example.se"),)
    assert parse_addresses('"Svensson, Anna" <a@x.se>, b@y.se') == (
        ("Svensson, Anna", "a@x.se"),
        ("", "b@y.se"),
    )
    assert parse_addresses("undisclosed-recipients:;") == ()


def test_message_ids_normalised_in_order_without_repeats():
    assert message_ids("<A@x> <b@Y>\r\n <a@x>") == ("a@x", "b@y")


def test_encoded_swedish_subject_and_name():
    message = build(
        b"Subject: =?utf-8?q?Reklamation_REK-2025-0042=3A_tr=C3=A5sig_leverans?=\r\n"
        b"From: =?iso-8859-1?q?=C5sa_L=F6f?= <asa@kund.example>\r\n"
        b"Message-ID: <X1@promix.example>\r\n"
        b"Date: Mon, 3 Mar 2025 10:00:00 +0100\r\n"
    )
    assert message.subject == "Reklamation REK-2025-0042: tråsig leverans"
    assert message.from_name == "Åsa Löf"
    assert message.from_addr == "asa@kund.example"
    assert message.message_id == "x1@promix.example"
    assert message.problems == ()


def test_malformed_message_is_indexed_with_problems():
    message = build(b"Subject: bad \xe5\xe4\r\nDate: yesterday\r\nno colon here\r\nTo: \x00x@y\r\n")
    assert message.subject == "bad åä"
    assert message.date_header is None
    assert message.date_raw == "yesterday"
    assert set(message.problems) >= {
        "8bit-header",
        "date-unparseable",
        "no-message-id",
        "nul-in-header",
    }


def test_folded_references_and_missing_date():
    message = build(b"References: <a@x>\r\n\t<b@x>\r\nIn-Reply-To: <b@x>\r\n")
    assert message.references == ("a@x", "b@x")
    assert message.in_reply_to == "b@x"
    assert "no-date" in message.problems


def test_bad_encoded_word_is_kept_raw():
    message = build(b"Subject: =?x-unknown?q?abc?=\r\nMessage-ID: <1@x>\r\n")
    assert "abc" in message.subject or "=?" in message.subject


def test_remembered_address_fields_replay_their_problems_for_every_message():
    block = b"From: =?utf-8?q?Eve=0D=0ABcc=3A_x?= <eve@x.example>\r\nMessage-ID: <1@x>\r\n"
    first, second = build(block), build(block)
    for message in (first, second):
        assert message.from_addr == "eve@x.example"
        assert "\n" not in message.from_name
        assert "\r" not in message.from_name
        assert "control-in-encoded-word" in message.problems


def test_a_name_with_non_ascii_white_space_is_not_a_field():
    message = build(b"Sub\xc2\xa0ject: hidden\r\nSubject: shown\r\nMessage-ID: <1@x>\r\n")
    assert message.subject == "shown"


_ID_PARTS = ["abc", "ABC", "=?utf-8?q?x?=", " ", "\t", "<", ">", "@", "é", "\r\n ", ".", "\x00"]


@settings(max_examples=400, deadline=None, database=None)
@given(
    name=st.sampled_from(["Message-ID", "message-id", "MESSAGE-Id", "Message-Id "]),
    parts=st.lists(st.sampled_from(_ID_PARTS), max_size=6),
    brackets=st.booleans(),
    ending=st.sampled_from(["\r\n\r\n", "\r\n", "\n\n", "", "\r\nX-Other: 1\r\n\r\n"]),
    twice=st.booleans(),
    encoding=st.sampled_from(["utf-8", "latin-1"]),
)
def test_the_identity_fetch_reads_the_message_id_the_index_stored(
    name: str, parts: list[str], brackets: bool, ending: str, twice: bool, encoding: str
) -> None:
    """``purge execute`` compares the server's Message-ID with the index's: the identity
    parser's shortcut must agree with the index parser on every header block."""
    ident = "".join(parts)
    value = f"<{ident}>" if brackets else ident
    line = f"{name}: {value}{ending}"
    block = (line * (2 if twice else 1)).encode(encoding, "replace")
    indexed = build_from_fetch(7, ("\\Seen",), None, 512, 3, block)
    identity = identity_from_fetch(7, ("\\Seen",), None, 512, 3, block)
    assert identity.message_id == indexed.message_id
    assert (identity.uid, identity.size, identity.flags, identity.modseq) == (
        7,
        512,
        ("\\Seen",),
        3,
    )


def test_a_plain_message_id_takes_the_shortcut() -> None:
    block = b"Message-ID: <Abc.123@Example.SE>\r\n\r\n"
    assert identity_from_fetch(1, (), None, 1, None, block).message_id == "abc.123@example.se"
