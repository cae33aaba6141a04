"""Reading an identity ``UID FETCH`` straight off the connection, as the second,
read-only connection of ``purge execute`` does while the first one moves mail: the
other session's moves reach it as untagged EXPUNGEs, which must be dropped."""

from __future__ import annotations

import io

from mailhygiene.imap.client import _read_fetch_response
from mailhygiene.imap.headers import parse_identity_fetch
from mailhygiene.mailbox import MessageIdentity


def identities(answer: bytes, tag: bytes = b"A5") -> tuple[list[MessageIdentity], bytes]:
    stream = io.BufferedReader(io.BytesIO(answer))
    found = parse_identity_fetch(_read_fetch_response(stream, tag))
    return found, stream.read()


def _fetch(number: int, uid: int, size: int, flags: bytes, message_id: bytes) -> bytes:
    block = b"Message-ID: <" + message_id + b">\r\n\r\n"
    return (
        b"* %d FETCH (UID %d FLAGS (%s) RFC822.SIZE %d MODSEQ (9) "
        b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n%s)\r\n"
        % (number, uid, flags, size, len(block), block)
    )


def test_expunges_and_flag_notices_between_the_answers_are_dropped() -> None:
    answer = (
        b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n"
        + _fetch(3, 40, 1200, b"\\Seen", b"a@example.se")
        + b"* 2 EXPUNGE\r\n"
        + b"* 7 FETCH (UID 90 FLAGS (\\Flagged) MODSEQ (12))\r\n"  # another client's change
        + _fetch(4, 41, 1300, b"\\Seen $Reklamation", b"B@Example.SE")
        + b"* 5 EXISTS\r\n"
        + b"A5 OK Fetch completed.\r\n"
        + b"A6 OK the next command's answer stays unread\r\n"
    )
    found, rest = identities(answer)
    assert found == [
        MessageIdentity(40, "a@example.se", 1200, ("\\Seen",), 9),
        MessageIdentity(41, "b@example.se", 1300, ("\\Seen", "$Reklamation"), 9),
    ]
    assert rest == b"A6 OK the next command's answer stays unread\r\n"


def test_items_in_another_order_are_read_too() -> None:
    block = b"Message-ID: <c@example.se>\r\n\r\n"
    answer = (
        b"* 1 FETCH (RFC822.SIZE 77 UID 5 BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n%s"
        b" FLAGS (\\Recent \\Seen))\r\nA5 OK done\r\n" % (len(block), block)
    )
    found, _rest = identities(answer)
    assert found == [MessageIdentity(5, "c@example.se", 77, ("\\Seen",), None)]
