"""Case refs in subjects and bodies, and the per-case IMAP keywords."""

from __future__ import annotations

import re

import pytest

from mailhygiene.cases.detect import (
    MAX_KEYWORD_LENGTH,
    case_from_keyword,
    find_case_refs,
    is_keyword_atom,
    keyword_for_case,
    validate_case_ref,
)
from mailhygiene.errors import InputError

REK = re.compile(r"REK-\d{4}-\d{4}")
PREFIX = "$Rek_"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SV: Reklamation REK-2025-0042 – trasig soffa", ("REK-2025-0042",)),
        ("Ärende rek-2025-0042 gäller leveransen", ("REK-2025-0042",)),  # lower case
        ("Angående Rek-2025-0042", ("REK-2025-0042",)),
        (
            "Gäller REK-2025-0043 och REK-2025-0042, se även rek-2025-0043.",
            ("REK-2025-0043", "REK-2025-0042"),  # distinct, in order of appearance
        ),
        ("(REK-2025-0042)", ("REK-2025-0042",)),
        ("[REK-2025-0042] Trasig leverans", ("REK-2025-0042",)),
        ("Ärendenr:REK-2025-0042/Åsa", ("REK-2025-0042",)),
        ("REK-2025-0042\r\nREK-2025-0044", ("REK-2025-0042", "REK-2025-0044")),
        ("Ingen referens här", ()),
        ("", ()),
        ("REK-2025-00421", ()),  # a longer number is not this case
        ("XREK-2025-0042", ()),  # nor a ref glued to a word
        ("REK-2025-0042_old", ()),
        ("REK-25-0042", ()),
    ],
)
def test_find_case_refs(text: str, expected: tuple[str, ...]) -> None:
    assert find_case_refs(text, REK) == expected


def test_find_case_refs_with_other_patterns() -> None:
    assert find_case_refs("Order #12345 och #23456", re.compile(r"#\d{5}")) == (
        "#12345",
        "#23456",
    )
    assert find_case_refs("ärende rk 77", re.compile(r"RK \d+")) == ("RK 77",)
    # A pattern with its own flags keeps them.
    assert find_case_refs("rek-2025-0042", re.compile(r"(?x) REK - \d{4} - \d{4}")) == (
        "REK-2025-0042",
    )


def test_empty_matches_are_ignored() -> None:
    assert find_case_refs("abc", re.compile(r"\d*")) == ()


def test_validate_case_ref() -> None:
    assert validate_case_ref("rek-2025-0042", REK) == "REK-2025-0042"
    assert validate_case_ref("  REK-2025-0042\n", REK) == "REK-2025-0042"


@pytest.mark.parametrize(
    "ref", ["", "REK-2025-004", "REK-2025-00420", "xREK-2025-0042", "REK-2025-0042 x", "REK"]
)
def test_validate_case_ref_refuses(ref: str) -> None:
    with pytest.raises(InputError, match="is not a case reference") as caught:
        validate_case_ref(ref, REK)
    assert REK.pattern in str(caught.value)


def test_keyword_round_trip() -> None:
    keyword = keyword_for_case("rek-2025-0042", PREFIX)
    assert keyword == "$Rek_REK-2025-0042"
    assert case_from_keyword(keyword, PREFIX) == "REK-2025-0042"
    assert case_from_keyword(keyword, PREFIX, pattern=REK) == "REK-2025-0042"


def test_keyword_prefix_is_compared_case_insensitively() -> None:
    assert case_from_keyword("$rek_rek-2025-0042", PREFIX) == "REK-2025-0042"


@pytest.mark.parametrize(
    "keyword",
    [
        "$Rek_",  # prefix only
        "$Other_REK-2025-0042",
        "\\Seen",
        "$Rek_REK 2025",
        '$Rek_REK"2025',
        "$Rek_REK(1)",
        "$Rek_REK\r\n2025",
        "$Rek_REK]",
        "$Rek_REK%",
        "$Rek_REK*",
        "$Rek_REK{5}",
        "$Rek_RÄK-1",
        "",
    ],
)
def test_malformed_keywords_are_not_cases(keyword: str) -> None:
    assert case_from_keyword(keyword, PREFIX) is None


def test_keyword_not_matching_the_pattern_is_not_a_case() -> None:
    assert case_from_keyword("$Rek_REK-2025-1", PREFIX) == "REK-2025-1"
    assert case_from_keyword("$Rek_REK-2025-1", PREFIX, pattern=REK) is None


@pytest.mark.parametrize(
    "ref",
    [
        'REK") UID STORE 1:* +FLAGS (\\Deleted',
        "REK-1\r\nA1 EXPUNGE",
        "REK 1",
        "REK(1)",
        "REK]",
        'REK"',
        "REK\\",
        "REK%",
        "REK*",
        "REK{4}",
        "RÄK-1",
        "REK\x00",
        "",
    ],
)
def test_keyword_for_case_refuses_injection(ref: str) -> None:
    with pytest.raises(InputError, match="cannot be an IMAP keyword"):
        keyword_for_case(ref, PREFIX)


@pytest.mark.parametrize("prefix", ["", "$Rek ", '"', "\\Rek", "(Rek", "Räk_"])
def test_keyword_for_case_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InputError, match="prefix"):
        keyword_for_case("REK-2025-0042", prefix)


def test_keyword_length_limit() -> None:
    long_ref = "REK-" + "9" * 60
    with pytest.raises(InputError, match=f"at most {MAX_KEYWORD_LENGTH}"):
        keyword_for_case(long_ref, PREFIX)
    assert keyword_for_case(long_ref, PREFIX, max_length=100).endswith(long_ref)


def test_is_keyword_atom_follows_rfc_3501() -> None:
    allowed = [chr(c) for c in range(0x80) if is_keyword_atom(chr(c))]
    refused = set('(){ %*"\\]') | {chr(c) for c in range(0x20)} | {"\x7f"}
    assert allowed == [chr(c) for c in range(0x80) if chr(c) not in refused]
    assert not is_keyword_atom("")
    assert not is_keyword_atom("é")
