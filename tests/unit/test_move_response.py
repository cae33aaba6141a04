"""Reading a pipelined ``UID MOVE``'s answer straight off the connection."""

from __future__ import annotations

import imaplib
import io

import pytest

from mailhygiene.imap.client import _copyuid_pairs, _read_move_answer


def read(text: bytes, tag: bytes = b"A7") -> list[bytes]:
    answer = _read_move_answer(io.BufferedReader(io.BytesIO(text)), tag)
    assert answer.warnings == []
    return answer.codes


def test_copyuid_from_the_untagged_ok_and_every_expunge_skipped() -> None:
    answer = (
        b"* OK [COPYUID 1700 1:3,9 11:14] Moved UIDs.\r\n"
        b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n* 6 EXPUNGE\r\n"
        b"A7 OK Move completed (0.001 + 0.000 secs).\r\n"
        b"A8 OK next command's answer stays unread\r\n"
    )
    stream = io.BufferedReader(io.BytesIO(answer))
    codes, warnings = _read_move_answer(stream, b"A7")
    assert warnings == []
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


def test_an_untagged_warning_is_kept_beside_the_codes() -> None:
    """What Dovecot answers when another client recreated the selected folder: it moved
    the UIDs' new owners. The warning makes the caller check what was moved."""
    answer = (
        b"* OK [COPYUID 1796652823 3:4 3:4] Moved UIDs.\r\n"
        b"* NO Internal error occurred. Refer to server log for more information.\r\n"
        b"* 2 EXPUNGE\r\n* BAD [PARSE] odd\r\n"
        b"A7 OK Move completed.\r\n"
    )
    codes, warnings = _read_move_answer(io.BufferedReader(io.BytesIO(answer)), b"A7")
    assert codes == [b"1796652823 3:4 3:4"]
    assert warnings == [
        "NO Internal error occurred. Refer to server log for more information.",
        "BAD [PARSE] odd",
    ]


def test_a_refused_move_raises_with_the_servers_words() -> None:
    answer = (
        b"* 3 EXPUNGE\r\nA7 NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n"
    )
    with pytest.raises(imaplib.IMAP4.error, match=r"NO \[EXPUNGEISSUED\]"):
        read(answer)


@pytest.mark.parametrize(
    "answer", [b"* 1 EXPUNGE\r\n", b"* OK [COPYUID 1 1 1] Moved\r\n* 1 EXPUNGE\r\n"]
)
def test_a_lost_connection_is_an_abort(answer: bytes) -> None:
    with pytest.raises(imaplib.IMAP4.abort):
        read(answer)


@pytest.mark.parametrize(
    "answer",
    [
        # the connection closes after BYE: what was reported before is kept
        b"* BYE IMAP session state is inconsistent, please relogin.\r\n"
        b"* OK [COPYUID 9 3:4 3:4] Moved UIDs.\r\n",
        # Dovecot says BYE, then still moves, warns and completes the command
        b"* BYE IMAP session state is inconsistent, please relogin.\r\n"
        b"* OK [COPYUID 9 3:4 3:4] Moved UIDs.\r\n* 3 EXPUNGE\r\n"
        b"* NO Internal error occurred.\r\nA7 OK Move completed.\r\n",
    ],
    ids=["closed", "completed"],
)
def test_a_bye_is_read_past_so_that_what_was_moved_is_known(answer: bytes) -> None:
    codes, warnings = _read_move_answer(io.BufferedReader(io.BytesIO(answer)), b"A7")
    assert codes == [b"9 3:4 3:4"]
    assert warnings[0] == "BYE IMAP session state is inconsistent, please relogin."


def test_a_failure_after_copyuid_is_a_warning() -> None:
    """Dovecot, its selected folder renamed away meanwhile, moved and then failed."""
    answer = (
        b"* OK [COPYUID 9 3:4 3:4] Moved UIDs.\r\n"
        b"A7 NO Mailbox was deleted under us (0.004 + 0.000 + 0.003 secs).\r\n"
    )
    codes, warnings = _read_move_answer(io.BufferedReader(io.BytesIO(answer)), b"A7")
    assert codes == [b"9 3:4 3:4"]
    assert warnings == ["NO Mailbox was deleted under us (0.004 + 0.000 + 0.003 secs)."]
