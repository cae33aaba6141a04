"""Reading a pipelined ``UID MOVE``'s answer straight off the connection."""

from __future__ import annotations

import imaplib
import io

import pytest

from mailhygiene.imap.client import _copyuid_pairs, _read_copyuid_codes


def read(text: bytes, tag: bytes = b"A7") -> list[bytes]:
    return _read_copyuid_codes(io.BufferedReader(io.BytesIO(text)), tag)


def test_copyuid_from_the_untagged_ok_and_every_expunge_skipped() -> None:
    answer = (
        b"* OK [COPYUID 1700 1:3,9 11:14] Moved UIDs.\r\n"
        b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n* 6 EXPUNGE\r\n"
        b"A7 OK Move completed (0.001 + 0.000 secs).\r\n"
        b"A8 OK next command's answer stays unread\r\n"
    )
    stream = io.BufferedReader(io.BytesIO(answer))
    codes = _read_copyuid_codes(stream, b"A7")
    assert codes == [b"1700 1:3,9 11:14"]
    assert dict(pair for code in codes for pair in _copyuid_pairs(code)) == {
        1: 11,
        2: 12,
        3: 13,
        9: 14,
    }
    assert stream.read() == b"A8 OK next command's answer stays unread\r\n"


def test_copyuid_in_the_tagged_ok_and_an_unsolicited_fetch_with_a_literal() -> None:
    answer = (
        b"* 4 FETCH (UID 40 BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: x\r\n)\r\n"
        b"* 2 EXPUNGE\r\n"
        b"A7 OK [COPYUID 9 5 77] Done\r\n"
    )
    assert read(answer) == [b"9 5 77"]


def test_a_refused_move_raises_with_the_servers_words() -> None:
    answer = (
        b"* 3 EXPUNGE\r\nA7 NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n"
    )
    with pytest.raises(imaplib.IMAP4.error, match=r"NO \[EXPUNGEISSUED\]"):
        read(answer)


@pytest.mark.parametrize(
    "answer",
    [b"* OK [COPYUID 1 1 1] Moved\r\n* BYE server shutting down\r\n", b"* 1 EXPUNGE\r\n"],
)
def test_a_lost_connection_is_an_abort(answer: bytes) -> None:
    with pytest.raises(imaplib.IMAP4.abort):
        read(answer)
