"""Pure helpers for the bytes we put on the IMAP wire and read back from it.

Kept free of sockets so the exact protocol bytes are pinned by unit tests. Every
value that reaches a command line goes through ``quote_mailbox``, ``keyword_atom``
or ``uid_set``, which refuse anything that could end the line early (CR, LF, NUL)
and so cannot inject a second command.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Container, Iterable, Iterator, Sequence
from itertools import islice
from operator import lt

from imapclient import imap_utf7

from mailhygiene.errors import InputError

# RFC 3501 §9: atom-specials are "(" ")" "{" SP CTL list-wildcards quoted-specials resp-specials.
_ATOM_FORBIDDEN = re.compile(r'[\x00-\x20\x7f(){%*"\\\]]')
_MAX_COMMAND_SET = 8000  # characters of one UID set; Dovecot's command line limit is 64 KB
_SET_PART = re.compile(r"[^,]+")
UID_TYPECODE = "Q"
"""``array`` type of a compact UID list: 8 bytes per UID (a list of ints needs 36–40)."""


def quote_mailbox(name: str) -> bytes:
    """A mailbox name as an IMAP quoted string, modified-UTF-7 encoded (RFC 3501 §5.1.3)."""
    if any(ch in name for ch in "\r\n\x00"):
        raise InputError(f"folder name {name!r} contains a line break or NUL; refusing to send it")
    encoded: bytes = bytes(imap_utf7.encode(name))
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def keyword_atom(keyword: str) -> bytes:
    """An IMAP keyword as an atom (RFC 3501 §9 ``flag-keyword``); refuses anything else."""
    if not keyword or _ATOM_FORBIDDEN.search(keyword) or not keyword.isascii():
        raise InputError(
            f"{keyword!r} is not a valid IMAP keyword: use letters, digits and $_-. only"
        )
    return keyword.encode("ascii")


def uid_set(uids: Iterable[int]) -> str:
    """Compress UIDs into an IMAP sequence set: ``[1, 2, 3, 7] -> "1:3,7"``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty UID set cannot be sent")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def parse_uid_set(text: str) -> list[int]:
    """Expand a sequence set (``"1:3,7"``) as returned by ESEARCH or COPYUID."""
    return list(iter_uid_set(text))


def iter_uid_set(text: str) -> Iterator[int]:
    """The UIDs of a sequence set one by one, without expanding it into a list first."""
    for found in _SET_PART.finditer(text):
        part = found.group()
        if ":" in part:
            low, high = (int(x) for x in part.split(":", 1))
            if low > high:
                low, high = high, low
            yield from range(low, high + 1)
        else:
            yield int(part)


def uid_array(uids: Iterable[int] = ()) -> array[int]:
    """UIDs in a compact ``array`` (8 bytes each), in the order given."""
    return array(UID_TYPECODE, uids)


def strictly_ascending(uids: Sequence[int]) -> bool:
    """Whether ``uids`` ascend without duplicates (one pass, no copy)."""
    return all(map(lt, uids, islice(uids, 1, None)))


def sorted_unique_uids(uids: array[int]) -> array[int]:
    """``uids`` ascending without duplicates: the array itself when it already is (as a
    server's SEARCH answer normally is), else a sorted, deduplicated copy."""
    if strictly_ascending(uids):
        return uids
    return uid_array(sorted(set(uids)))


class AscendingUids(Container[int]):
    """``in`` for ascending UIDs (an array, a sorted list) by binary search, so no set of
    them needs to be built."""

    def __init__(self, uids: Sequence[int]) -> None:
        self._uids = uids

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        at = bisect_left(self._uids, uid)
        return at < len(self._uids) and self._uids[at] == uid


def chunked_uid_sets(uids: Sequence[int], *, max_uids: int) -> Iterator[tuple[list[int], str]]:
    """Split UIDs into batches of at most ``max_uids`` whose set stays under the line limit.

    Batches ascend without duplicates. UIDs that already do (a ``search_uid_array``
    answer, a ``sorted`` list) are sliced as they are, batch by batch (so do not change
    them while iterating); anything else is sorted and deduplicated first, into a copy.
    """
    ordered: Sequence[int] = uids if strictly_ascending(uids) else sorted(set(uids))
    for start in range(0, len(ordered), max_uids):
        batch = list(ordered[start : start + max_uids])
        text = uid_set(batch)
        if len(text) <= _MAX_COMMAND_SET:
            yield batch, text
            continue
        half = max(1, len(batch) // 2)
        yield from chunked_uid_sets(batch[:half], max_uids=half)
        yield from chunked_uid_sets(batch[half:], max_uids=half)
