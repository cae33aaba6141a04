"""The kinds of condition a retention rule can test, one small class each, in a registry.

Each kind has a ``NAME`` (its key under ``[rules.match]`` in ``rules.toml``), builds
itself from the TOML value with ``from_config``, answers ``matches(facts)`` and says what
it tests in words with ``describe()``. Adding a kind is one class here (decorated with
``@register``) and one test; the loader finds it through ``MATCHERS``.

All text comparisons are case-insensitive. Globs use ``fnmatch`` syntax (``*``, ``?``,
``[abc]``); regular expressions use ``re.search`` (anywhere in the text).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from mailhygiene.policy.model import MessageFacts

__all__ = [
    "HEADER_NAMES",
    "INDEXED_HEADERS",
    "MATCHERS",
    "FolderMatcher",
    "HeaderMatcher",
    "HeaderTest",
    "KeywordMatcher",
    "MatcherBase",
    "MatcherValueError",
    "RecipientMatcher",
    "SenderMatcher",
    "SubjectMatcher",
    "is_imap_keyword",
    "register",
    "show",
]

INDEXED_HEADERS = ("list-id", "auto-submitted", "x-mailer", "content-type")
HEADER_NAMES = (*INDEXED_HEADERS, "from", "to", "cc", "subject")
"""Headers a ``header`` condition may test: the indexed extras plus the envelope fields."""

# RFC 3501 §9 atom (flag-keyword), optionally "\\"-prefixed for system flags.
_ATOM = re.compile(r"\\?[!#$&'+-\[^-z|}~]+")


def is_imap_keyword(text: str) -> bool:
    """True if ``text`` can be stored as an IMAP keyword or is a system flag like ``\\Seen``."""
    return _ATOM.fullmatch(text) is not None


class MatcherValueError(ValueError):
    """A condition's configuration is invalid; ``subkey`` locates it below the condition.

    ``subkey`` is relative to the condition's own key, e.g. ``"[1].pattern"``.
    """

    def __init__(self, message: str, subkey: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.subkey = subkey


def show(value: object) -> str:
    """A TOML-ish rendering of a config value for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _strings(value: object) -> tuple[str, ...]:
    """Accept a string or a non-empty list of non-empty strings."""
    expected = "expected a string or list of strings"
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, list):
        if not value:
            raise MatcherValueError(f"{expected}, got an empty list")
        items = list(value)
    else:
        raise MatcherValueError(f"{expected}, got {show(value)}")
    result: list[str] = []
    for index, item in enumerate(items):
        subkey = f"[{index}]" if isinstance(value, list) else ""
        if not isinstance(item, str):
            raise MatcherValueError(f"{expected}, got {show(item)}", subkey)
        if not item.strip():
            raise MatcherValueError("must not be empty", subkey)
        result.append(item)
    return tuple(result)


def _compile(pattern: str, subkey: str = "") -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as error:
        raise MatcherValueError(
            f"invalid regular expression {pattern!r}: {error}", subkey
        ) from error


def _glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    try:
        return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as error:
        raise MatcherValueError(f"invalid glob pattern: {error}") from error


def _quoted(items: tuple[str, ...]) -> str:
    return " or ".join(repr(item) for item in items)


class MatcherBase:
    """Shared shape of the condition kinds; subclasses are frozen dataclasses."""

    __slots__ = ()
    NAME: ClassVar[str]

    @classmethod
    def from_config(cls, value: object) -> Self:
        """Build from the TOML value under ``match.<NAME>``; ``MatcherValueError`` if invalid."""
        raise NotImplementedError

    def matches(self, facts: MessageFacts) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


MATCHERS: dict[str, type[MatcherBase]] = {}
"""Condition kinds by ``NAME``, in the order they were registered."""


_Kind = TypeVar("_Kind", bound=type[MatcherBase])


def register(cls: _Kind) -> _Kind:
    """Class decorator: add a condition kind to ``MATCHERS`` under its ``NAME``."""
    if cls.NAME in MATCHERS:
        raise ValueError(f"a condition kind named {cls.NAME!r} is already registered")
    MATCHERS[cls.NAME] = cls
    return cls


def _address_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    for index, pattern in enumerate(patterns):
        if "@" not in pattern:
            raise MatcherValueError(
                f"expected an address (alice@example.se), a domain (@example.se) or a glob "
                f"with @ (*@*.example.se), got {pattern!r}",
                f"[{index}]" if len(patterns) > 1 else "",
            )
    return _glob(tuple("*" + p if p.startswith("@") else p for p in patterns))


def _address_words(patterns: tuple[str, ...]) -> str:
    words = []
    for pattern in patterns:
        if pattern.startswith("@") and not any(c in pattern for c in "*?["):
            words.append(f"any address at {pattern[1:]}")
        elif any(c in pattern for c in "*?["):
            words.append(f"an address matching {pattern!r}")
        else:
            words.append(pattern)
    return " or ".join(words)


def _require_patterns(patterns: tuple[str, ...], name: str) -> None:
    if not patterns:
        raise MatcherValueError(f"a {name} condition needs at least one pattern")


@register
@dataclass(frozen=True, slots=True)
class FolderMatcher(MatcherBase):
    """The message is in a folder whose full name matches a glob (``INBOX/Faktura*``)."""

    NAME: ClassVar[str] = "folder"
    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_patterns(self.patterns, self.NAME)
        object.__setattr__(self, "_regex", _glob(self.patterns))

    @classmethod
    def from_config(cls, value: object) -> Self:
        return cls(_strings(value))

    def matches(self, facts: MessageFacts) -> bool:
        return self._regex.match(facts.folder) is not None

    def describe(self) -> str:
        return f"the folder matches {_quoted(self.patterns)}"


@register
@dataclass(frozen=True, slots=True)
class SenderMatcher(MatcherBase):
    """The From address is one of: an address, ``@domain``, or a glob containing ``@``."""

    NAME: ClassVar[str] = "sender"
    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_patterns(self.patterns, self.NAME)
        object.__setattr__(self, "_regex", _address_regex(self.patterns))

    @classmethod
    def from_config(cls, value: object) -> Self:
        return cls(_strings(value))

    def matches(self, facts: MessageFacts) -> bool:
        return self._regex.match(facts.from_addr) is not None

    def describe(self) -> str:
        return f"it is from {_address_words(self.patterns)}"


@register
@dataclass(frozen=True, slots=True)
class RecipientMatcher(MatcherBase):
    """Any To or Cc address matches, with the same patterns as ``sender``."""

    NAME: ClassVar[str] = "recipient"
    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_patterns(self.patterns, self.NAME)
        object.__setattr__(self, "_regex", _address_regex(self.patterns))

    @classmethod
    def from_config(cls, value: object) -> Self:
        return cls(_strings(value))

    def matches(self, facts: MessageFacts) -> bool:
        return any(
            self._regex.match(address) is not None for address in (*facts.to_addrs, *facts.cc_addrs)
        )

    def describe(self) -> str:
        return f"it was sent to (To/Cc) {_address_words(self.patterns)}"


@register
@dataclass(frozen=True, slots=True)
class SubjectMatcher(MatcherBase):
    """The decoded subject contains a match for a regular expression.

    A pattern that matches the empty string is refused: it would match every subject,
    which is what the default retention is for.
    """

    NAME: ClassVar[str] = "subject"
    patterns: tuple[str, ...]
    _regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_patterns(self.patterns, self.NAME)
        regexes = []
        for index, pattern in enumerate(self.patterns):
            subkey = f"[{index}]" if len(self.patterns) > 1 else ""
            regex = _compile(pattern, subkey)
            if regex.search("") is not None:
                raise MatcherValueError(
                    f"regular expression {pattern!r} matches an empty subject, so it would "
                    "match every message; make it stricter",
                    subkey,
                )
            regexes.append(regex)
        object.__setattr__(self, "_regexes", tuple(regexes))

    @classmethod
    def from_config(cls, value: object) -> Self:
        return cls(_strings(value))

    def matches(self, facts: MessageFacts) -> bool:
        return any(regex.search(facts.subject) is not None for regex in self._regexes)

    def describe(self) -> str:
        shown = " or ".join(f"/{pattern}/" for pattern in self.patterns)
        return f"the subject contains {shown} (ignoring case)"


@dataclass(frozen=True, slots=True)
class HeaderTest:
    """One header name and the regular expression its value must contain."""

    name: str
    pattern: str


def _header_value(facts: MessageFacts, name: str) -> str | None:
    if name == "from":
        return facts.from_addr
    if name == "to":
        return ", ".join(facts.to_addrs)
    if name == "cc":
        return ", ".join(facts.cc_addrs)
    if name == "subject":
        return facts.subject
    return facts.headers.get(name)


@register
@dataclass(frozen=True, slots=True)
class HeaderMatcher(MatcherBase):
    """A header's value contains a match for a regular expression.

    Only headers the index stores can be tested (``HEADER_NAMES``); a message without the
    header does not match, so ``pattern = "."`` means "the header is present".
    """

    NAME: ClassVar[str] = "header"
    tests: tuple[HeaderTest, ...]
    _regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.tests:
            raise MatcherValueError("a header condition needs at least one {name, pattern}")
        regexes = []
        for index, test in enumerate(self.tests):
            prefix = f"[{index}]" if len(self.tests) > 1 else ""
            if test.name not in HEADER_NAMES:
                raise MatcherValueError(
                    f"header {test.name!r} is not indexed, so it cannot be tested; "
                    f"allowed: {', '.join(HEADER_NAMES)}",
                    f"{prefix}.name",
                )
            regexes.append(_compile(test.pattern, f"{prefix}.pattern"))
        object.__setattr__(self, "_regexes", tuple(regexes))

    @classmethod
    def from_config(cls, value: object) -> Self:
        expected = 'expected a table {name = "list-id", pattern = "..."} or a list of them'
        if isinstance(value, dict):
            items: list[object] = [value]
        elif isinstance(value, list) and value:
            items = list(value)
        else:
            raise MatcherValueError(f"{expected}, got {show(value)}")
        tests = []
        for index, item in enumerate(items):
            prefix = f"[{index}]" if isinstance(value, list) else ""
            if not isinstance(item, dict):
                raise MatcherValueError(f"{expected}, got {show(item)}", prefix)
            for key in item:
                if key not in ("name", "pattern"):
                    close = difflib.get_close_matches(key, ("name", "pattern"), n=1)
                    hint = f"did you mean {close[0]!r}?" if close else "known keys: name, pattern"
                    raise MatcherValueError(f"unknown key {key!r}; {hint}", f"{prefix}.{key}")
            for key in ("name", "pattern"):
                if key not in item:
                    raise MatcherValueError(f"missing key {key!r}", f"{prefix}.{key}")
                if not isinstance(item[key], str):
                    raise MatcherValueError(
                        f"expected a string, got {show(item[key])}", f"{prefix}.{key}"
                    )
            tests.append(HeaderTest(str(item["name"]).strip().lower(), str(item["pattern"])))
        return cls(tuple(tests))

    def matches(self, facts: MessageFacts) -> bool:
        for test, regex in zip(self.tests, self._regexes, strict=True):
            value = _header_value(facts, test.name)
            if value is not None and regex.search(value) is not None:
                return True
        return False

    def describe(self) -> str:
        shown = " or ".join(f"header {t.name} contains /{t.pattern}/" for t in self.tests)
        return f"{shown} (ignoring case)"


@register
@dataclass(frozen=True, slots=True)
class KeywordMatcher(MatcherBase):
    """The message carries an IMAP keyword or flag, e.g. ``$Faktura`` set by staff."""

    NAME: ClassVar[str] = "keyword"
    keywords: tuple[str, ...]
    _folded: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_patterns(self.keywords, self.NAME)
        for index, keyword in enumerate(self.keywords):
            if not is_imap_keyword(keyword):
                raise MatcherValueError(
                    f'{keyword!r} is not a valid IMAP keyword (ASCII, no spaces or ()%*"\\])',
                    f"[{index}]" if len(self.keywords) > 1 else "",
                )
        object.__setattr__(self, "_folded", frozenset(k.casefold() for k in self.keywords))

    @classmethod
    def from_config(cls, value: object) -> Self:
        return cls(_strings(value))

    def matches(self, facts: MessageFacts) -> bool:
        return any(keyword.casefold() in self._folded for keyword in facts.keywords)

    def describe(self) -> str:
        return f"it has the keyword {_quoted(self.keywords)}"
