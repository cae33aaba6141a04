"""Finding complaint-case references in text, and the per-case IMAP keywords.

Case refs look like ``REK-2025-0042``; the exact shape is the configured pattern. Refs
are canonical in upper case and found case-insensitively (``rek-2025-0042`` in a
customer's reply is the same case). A match counts only when it is not glued to more
letters, digits or underscores: with ``REK-\\d{4}-\\d{4}``, ``REK-2025-00421`` is not
``REK-2025-0042``.

Cases are mirrored to the server as IMAP keywords so that they survive re-indexing and
are visible to other clients. A keyword is an atom (RFC 3501 §9: ``flag-keyword =
atom``; ``ATOM-CHAR`` is any 7-bit CHAR except ``( ) { SP CTL % * " \\ ]``), so keywords
are built and read back only through :func:`keyword_for_case` and
:func:`case_from_keyword`, which refuse anything else: a ref or prefix can never smuggle
a quote, a parenthesis or a CRLF into an IMAP command.
"""

from __future__ import annotations

import functools
import re

from mailhygiene.errors import InputError

__all__ = [
    "MAX_KEYWORD_LENGTH",
    "case_from_keyword",
    "find_case_refs",
    "is_keyword_atom",
    "keyword_for_case",
    "validate_case_ref",
]

MAX_KEYWORD_LENGTH = 50
"""Dovecot's default ``mail_max_keyword_length``; longer keywords are refused there."""

# RFC 3501 §9 ATOM-CHAR: %x01-7F except "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]".
_ATOM = re.compile(r"[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")


def find_case_refs(text: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Return the distinct case refs in ``text``, upper-cased, in order of appearance.

    ``pattern`` is matched case-insensitively; its whole match is the ref.
    """
    found: dict[str, None] = {}
    for match in _insensitive(pattern).finditer(text):
        start, end = match.span()
        if start == end or _glued(text, start, end):
            continue
        found.setdefault(match.group().upper(), None)
    return tuple(found)


def validate_case_ref(ref: str, pattern: re.Pattern[str]) -> str:
    """Return ``ref`` in canonical (upper-case) form, or raise :class:`InputError`.

    Surrounding whitespace is ignored; the rest must match ``pattern`` entirely.
    """
    candidate = ref.strip()
    if not candidate or _insensitive(pattern).fullmatch(candidate) is None:
        raise InputError(
            f"{ref!r} is not a case reference — expected one matching the configured "
            f"pattern '{pattern.pattern}', e.g. REK-2025-0042"
        )
    return candidate.upper()


def keyword_for_case(ref: str, prefix: str, *, max_length: int = MAX_KEYWORD_LENGTH) -> str:
    """Return the IMAP keyword that marks messages of case ``ref``: ``prefix + REF``.

    E.g. ``keyword_for_case("rek-2025-0042", "$Rek_")`` is ``$Rek_REK-2025-0042``.
    Raises :class:`InputError` when the result would not be an IMAP atom (RFC 3501 §9)
    or would be longer than ``max_length``.
    """
    if not is_keyword_atom(prefix):
        raise InputError(
            f"case keyword prefix {prefix!r} is not an IMAP atom — use ASCII letters, "
            "digits and $ _ - . only, e.g. $Rek_"
        )
    canonical = ref.upper()
    if not is_keyword_atom(canonical):
        raise InputError(
            f"case reference {ref!r} cannot be an IMAP keyword — keywords are ASCII without "
            'spaces, controls or ( ) { } % * " \\ ] (RFC 3501 §9)'
        )
    keyword = prefix + canonical
    if len(keyword) > max_length:
        raise InputError(
            f"case keyword {keyword!r} is {len(keyword)} characters; the server accepts at "
            f"most {max_length} — shorten the prefix {prefix!r}"
        )
    return keyword


def case_from_keyword(
    keyword: str, prefix: str, *, pattern: re.Pattern[str] | None = None
) -> str | None:
    """Return the case ref a keyword marks, or None if it is not a well-formed case keyword.

    The prefix is compared case-insensitively (servers may report keywords in another
    case than they were stored); the rest must be a non-empty atom and, when ``pattern``
    is given, a valid case ref. Keywords come from the server, so a malformed one is
    data to ignore, not a user error.
    """
    if not is_keyword_atom(keyword) or not is_keyword_atom(prefix):
        return None
    if not keyword.casefold().startswith(prefix.casefold()) or len(keyword) == len(prefix):
        return None
    ref = keyword[len(prefix) :].upper()
    if pattern is not None and _insensitive(pattern).fullmatch(ref) is None:
        return None
    return ref


def is_keyword_atom(value: str) -> bool:
    """Tell whether ``value`` can be sent as an IMAP flag keyword (RFC 3501 §9 atom).

    A leading backslash is not possible (``\\`` is not an ATOM-CHAR), so system flags
    such as ``\\Deleted`` are never keywords.
    """
    return _ATOM.fullmatch(value) is not None


@functools.lru_cache(maxsize=32)
def _insensitive(pattern: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(pattern.pattern, pattern.flags | re.IGNORECASE)


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the match at ``text[start:end]`` continues a longer word on either side."""
    glued_before = start > 0 and _is_word(text[start - 1]) and _is_word(text[start])
    glued_after = end < len(text) and _is_word(text[end]) and _is_word(text[end - 1])
    return glued_before or glued_after


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"
