"""rules.toml: the repository's policy loads and means what it says; every mistake is a
ConfigError naming file and key; fuzzed input never escapes as another exception."""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhygiene.config import load_rules, parse_rules
from mailhygiene.config import rules as rules_module
from mailhygiene.errors import ConfigError
from mailhygiene.policy import (
    MATCHERS,
    Action,
    Anchor,
    Duration,
    MessageFacts,
    Policy,
    PurgeAction,
    decide,
)

REPO_RULES = Path(__file__).resolve().parents[2] / "rules.toml"
MINIMAL = '[retention]\ndefault = "180d"\n'
RULE = '[[rules]]\nname = "{name}"\nkeep = "1y"\n[rules.match]\nfolder = "INBOX"\n'
FUZZ = settings(max_examples=200, deadline=None, database=None)


def fails(text: str) -> str:
    with pytest.raises(ConfigError) as error:
        parse_rules(text, source="rules.toml")
    return str(error.value)


def message(**changes: object) -> MessageFacts:
    fields: dict[str, object] = {
        "message_key": 1,
        "account": "info@promix.se",
        "folder": "INBOX",
        "internal_date": datetime(2024, 3, 2, 9, 15, tzinfo=UTC),
        "date_header": None,
        "size": 1000,
        "from_addr": "kund@example.se",
        "to_addrs": ("info@promix.se",),
        "cc_addrs": (),
        "subject": "Hej",
        "headers": {},
        "keywords": frozenset(),
    }
    fields.update(changes)
    return MessageFacts(**fields)  # type: ignore[arg-type]


# -- the repository's rules.toml ---------------------------------------------------------


def test_the_repository_rules_file_is_the_promix_policy() -> None:
    policy = load_rules(REPO_RULES)
    assert policy.timezone == "Europe/Stockholm"
    assert policy.default_keep == Duration.parse("180d")
    assert policy.case_keep_after_close == Duration.parse("90d")
    assert policy.case_pattern == r"REK-\d{4}-\d{4}"
    assert policy.case_auto_create is True
    assert policy.case_keyword == "$Reklamation"
    assert policy.purge_action is PurgeAction.MOVE
    assert policy.quarantine_folder == "Quarantine"
    assert policy.quarantine_grace == Duration.parse("30d")
    assert policy.auto_approve_limit == 500
    assert policy.plan_ttl == Duration.parse("7d")
    assert policy.source_hash == hashlib.sha256(REPO_RULES.read_bytes()).hexdigest()
    bookkeeping = policy.rules[0]
    assert (bookkeeping.name, bookkeeping.keep, bookkeeping.anchor) == (
        "bookkeeping",
        Duration.parse("7y"),
        Anchor.END_OF_YEAR,
    )
    assert "bokföringslagen 7 kap. 2 §" in bookkeeping.source
    assert re.search(r"REK-\d{4}-\d{4}", "Re: REK-2024-0042 trasig leverans")


def test_the_repository_rules_file_decides_as_documented() -> None:
    policy = load_rules(REPO_RULES)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    invoice = decide(message(subject="Faktura 2024-117"), policy, now)
    assert invoice.action is Action.KEEP
    assert invoice.keep_until == datetime(2031, 12, 31, 23, tzinfo=UTC)
    newsletter = decide(message(headers={"list-id": "<news.example>"}), policy, now)
    assert (newsletter.action, newsletter.reasons[0].name) == (Action.PURGE, "newsletters")
    automatic_invoice = message(subject="Invoice 5", headers={"auto-submitted": "auto-generated"})
    assert [r.name for r in decide(automatic_invoice, policy, now).reasons] == [
        "bookkeeping",
        "automatic",
    ]
    assert decide(message(folder="INBOX/Ekonomi/2024"), policy, now).action is Action.KEEP
    assert decide(message(), policy, now).action is Action.PURGE
    marked = message(keywords=frozenset({"$Reklamation"}))
    assert decide(marked, policy, now).action is Action.KEEP


def test_every_key_is_explained_in_a_comment_of_the_repository_rules_file() -> None:
    lines = REPO_RULES.read_text(encoding="utf-8").splitlines()
    comments = "\n".join(line for line in lines if line.lstrip().startswith("#"))
    settings_keys = (
        *rules_module._TOP,
        *rules_module._RETENTION,
        *rules_module._CASES,
        *rules_module._PURGE,
    )
    # Each setting is assigned once, right under the comment that explains it.
    settings_lines = lines[: lines.index("[[rules]]")]
    for index, line in enumerate(settings_lines):
        if line.split("=")[0].strip() in settings_keys:
            assert settings_lines[index - 1].startswith("#"), f"no comment above {line!r}"
    # Rule keys and conditions repeat per rule; they are explained once, in the key list.
    explained = re.findall(r"^#   \[?(?:rules\.)?(\w+)", comments, flags=re.MULTILINE)
    assert [key for key in rules_module._RULE if key not in explained] == []
    assert [key for key in MATCHERS if f"#     {key}" not in comments] == []
    assert "NOT LEGAL ADVICE" in comments
    assert "bokföringslagen (1999:1078) 7 kap. 2 §" in comments


# -- the minimal file and defaults ---------------------------------------------------------


def test_a_minimal_file_gets_the_documented_defaults() -> None:
    policy = parse_rules(MINIMAL, source="rules.toml")
    assert policy == Policy(source_hash=policy.source_hash)
    assert policy.source_hash == hashlib.sha256(MINIMAL.encode()).hexdigest()


def test_a_rule_gets_anchor_received_by_default_and_keeps_its_texts() -> None:
    text = MINIMAL + RULE.format(name="r") + 'description = "d"\n'
    assert "description" in fails(text)  # under [rules.match] it is not a condition
    text = MINIMAL + (
        '[[rules]]\nname = "r"\nkeep = "1y"\ndescription = "d"\nsource = "s"\n'
        '[rules.match]\nheader = [{name = "list-id", pattern = "."}]\n'
    )
    (rule,) = parse_rules(text, source="rules.toml").rules
    assert (rule.anchor, rule.description, rule.source) == (Anchor.RECEIVED, "d", "s")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_rules(path).default_keep == Duration.parse("180d")


# -- every mistake names the key ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL
            + RULE.format(name="a")
            + RULE.format(name="b")
            + RULE.format(name="c")
            + "sender = 12\n",
            "rules.toml: rules[2].match.sender: expected a string or list of strings, got 12",
        ),
        (
            'timezon = "UTC"\n' + MINIMAL,
            "rules.toml: timezon: unknown key 'timezon'; did you mean 'timezone'?",
        ),
        (
            '[retention]\ndefualt = "180d"\n',
            "rules.toml: retention.defualt: unknown key 'defualt'; did you mean 'default'?",
        ),
        (
            MINIMAL + RULE.format(name="a") + 'sendr = "@x.se"\n',
            "rules.toml: rules[0].match.sendr: unknown key 'sendr'; did you mean 'sender'?",
        ),
        (
            MINIMAL + '[[rules]]\nname = "a"\nkep = "1y"\n',
            "rules.toml: rules[0].kep: unknown key 'kep'; did you mean 'keep'?",
        ),
        (
            MINIMAL + "[purge]\nzzz = 1\n",
            "rules.toml: purge.zzz: unknown key 'zzz'; known keys: action, quarantine_folder, "
            "quarantine_grace, auto_approve_limit, plan_ttl",
        ),
        (
            '"odd.key" = 1\n' + MINIMAL,
            "rules.toml: \"odd.key\": unknown key 'odd.key'; known keys: version, timezone, "
            "retention, cases, purge, policy, rules",
        ),
        (
            '[retention]\ndefault = "180"\n',
            "rules.toml: retention.default: expected a duration like 180d, 2w, 18m or 7y "
            "(d=days, w=weeks, m=months, y=years), got '180'",
        ),
        (
            "[retention]\ndefault = 180\n",
            "rules.toml: retention.default: expected a duration like 180d, 2w, 18m or 7y "
            "(d=days, w=weeks, m=months, y=years), got 180",
        ),
        (
            '[retention]\ndefault = "0d"\n',
            "rules.toml: retention.default: must be longer than zero, got '0d'",
        ),
        (
            '[retention]\ndefault = "200y"\n',
            "rules.toml: retention.default: 200y is longer than the supported maximum of 100 years",
        ),
        (
            "[retention]\n",
            "rules.toml: retention.default: missing; expected a duration like 180d, 2w, 18m "
            "or 7y (d=days, w=weeks, m=months, y=years)",
        ),
        ('timezone = "UTC"\n', "rules.toml: retention: missing section [retention]"),
        ('retention = "180d"\n', "rules.toml: retention: expected a [retention] table, got '180d'"),
        (
            MINIMAL + '[[rules]]\nname = "a"\nkeep = "1y"\nanchor = "end-of-year"\n'
            '[rules.match]\nfolder = "x"\n',
            "rules.toml: rules[0].anchor: expected one of received, end_of_year, "
            "got 'end-of-year'; did you mean 'end_of_year'?",
        ),
        (
            MINIMAL + RULE.format(name="a") + "subject = '(faktura'\n",
            "rules.toml: rules[0].match.subject: invalid regular expression '(faktura': "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            MINIMAL + RULE.format(name="a") + 'subject = ["ok", "[a-"]\n',
            "rules.toml: rules[0].match.subject[1]: invalid regular expression '[a-': "
            "unterminated character set at position 0",
        ),
        (
            MINIMAL + RULE.format(name="a") + 'header = {name = "x-spam", pattern = "."}\n',
            "rules.toml: rules[0].match.header.name: header 'x-spam' is not indexed, so it "
            "cannot be tested; allowed: list-id, auto-submitted, x-mailer, content-type, "
            "from, to, cc, subject",
        ),
        (
            MINIMAL
            + RULE.format(name="a")
            + 'header = [{name = "list-id", pattern = "."}, {name = "to", pattern = "*"}]\n',
            "rules.toml: rules[0].match.header[1].pattern: invalid regular expression '*': "
            "nothing to repeat at position 0",
        ),
        (
            MINIMAL + RULE.format(name="a") + 'sender = "bank.se"\n',
            "rules.toml: rules[0].match.sender: expected an address (alice@example.se), a "
            "domain (@example.se) or a glob with @ (*@*.example.se), got 'bank.se'",
        ),
        (
            'timezone = "Europe/Stockhom"\n' + MINIMAL,
            "rules.toml: timezone: unknown time zone 'Europe/Stockhom'; use an IANA name "
            "such as 'Europe/Stockholm'",
        ),
        (
            MINIMAL + "[purge]\nauto_approve_limit = -1\n",
            "rules.toml: purge.auto_approve_limit: must be 0 or more (0 = never "
            "auto-approve), got -1",
        ),
        (
            MINIMAL + "[purge]\nauto_approve_limit = true\n",
            "rules.toml: purge.auto_approve_limit: expected a whole number, got true",
        ),
        (
            MINIMAL + "[purge]\nauto_approve_limit = 1.5\n",
            "rules.toml: purge.auto_approve_limit: expected a whole number, got 1.5",
        ),
        (
            MINIMAL + '[purge]\naction = "remove"\n',
            "rules.toml: purge.action: expected one of move, delete, got 'remove'; "
            "did you mean 'move'?",
        ),
        (
            MINIMAL + '[purge]\nquarantine_folder = "inbox"\n',
            "rules.toml: purge.quarantine_folder: the quarantine cannot be INBOX; use a "
            "folder of its own",
        ),
        (
            MINIMAL + '[purge]\nquarantine_folder = "Old/*"\n',
            "rules.toml: purge.quarantine_folder: expected a folder name without * or % or "
            "control characters, got 'Old/*'",
        ),
        (
            MINIMAL + "[cases]\npattern = '(REK-\\d{4})?'\n",
            "rules.toml: cases.pattern: regular expression '(REK-\\\\d{4})?' matches empty text",
        ),
        (
            MINIMAL + '[cases]\nkeyword = "Reklamation ärende"\n',
            "rules.toml: cases.keyword: 'Reklamation ärende' is not a valid IMAP keyword: use "
            "ASCII letters, digits and $, no spaces or ()%*\"\\], e.g. '$Reklamation'",
        ),
        (
            MINIMAL + '[cases]\nauto_create = "yes"\n',
            "rules.toml: cases.auto_create: expected true or false, got 'yes'",
        ),
        (
            MINIMAL + RULE.format(name="a") + RULE.format(name="a"),
            "rules.toml: rules[1].name: duplicate rule name 'a' (already used by rules[0])",
        ),
        (
            MINIMAL + RULE.format(name="two words"),
            "rules.toml: rules[0].name: expected a short name of letters, digits, '-', '_' "
            "or '.', got 'two words'",
        ),
        (
            MINIMAL + '[[rules]]\nname = "a"\nkeep = "1y"\n',
            "rules.toml: rules[0].match: missing; a rule needs at least one condition "
            "(folder, sender, recipient, subject, header, keyword)",
        ),
        (
            MINIMAL + '[[rules]]\nname = "a"\nkeep = "1y"\nmatch = {}\n',
            "rules.toml: rules[0].match: expected a table with at least one of folder, "
            "sender, recipient, subject, header, keyword, got a table",
        ),
        (
            MINIMAL + '[[rules]]\nkeep = "1y"\n',
            "rules.toml: rules[0].name: missing; this key is required",
        ),
        ('rules = "x"\n' + MINIMAL, "rules.toml: rules: expected [[rules]] tables, got 'x'"),
        ("rules = [1]\n" + MINIMAL, "rules.toml: rules[0]: expected a [[rules]] table, got 1"),
        (
            "version = 2\n" + MINIMAL,
            "rules.toml: version: unsupported version 2; this mailhygiene reads version 1",
        ),
    ],
)
def test_mistakes_are_config_errors_naming_file_and_key(text: str, expected: str) -> None:
    assert fails(text) == expected


def test_toml_syntax_errors_give_line_and_column() -> None:
    assert fails(MINIMAL + "[purge\n") == (
        "rules.toml: invalid TOML: Expected ']' at the end of a table declaration "
        "(at line 3, column 7)"
    )


def test_deeply_nested_toml_is_a_config_error() -> None:
    assert "nested too deeply" in fails("a = " + "[" * 5000 + "]" * 5000)


def test_a_missing_file_says_which_and_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    with pytest.raises(ConfigError) as error:
        load_rules(path)
    assert str(error.value) == (
        f"{path}: no such file; create it by copying the documented rules.toml from the "
        "mailhygiene source tree and adapting it to your policy"
    )
    assert (error.value.path, error.value.key) == (str(path), None)


def test_a_directory_or_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_rules(tmp_path)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(MINIMAL.encode() + "# bokföring\n".encode("latin-1"))
    offset = len(MINIMAL.encode()) + len("# bokf")
    with pytest.raises(ConfigError, match=rf"not UTF-8 text \(bad byte at offset {offset}\)"):
        load_rules(latin1)


# -- fuzzing: anything at all is a Policy or a ConfigError -----------------------------------


def parses_or_config_error(text: str) -> None:
    try:
        policy = parse_rules(text, source="fuzz.toml")
    except ConfigError as error:
        problem = str(error)
    else:
        # Whatever loads must be usable: decide() runs on it without surprises.
        decide(message(), policy, datetime(2030, 1, 1, tzinfo=UTC))
        return
    assert problem.startswith("fuzz.toml: ")


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_is_a_policy_or_a_config_error(text: str) -> None:
    parses_or_config_error(text)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_in_a_file_are_a_policy_or_a_config_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rules.toml"
        path.write_bytes(data)
        with contextlib.suppress(ConfigError):
            load_rules(path)


REPO_TEXT = REPO_RULES.read_text(encoding="utf-8")


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(REPO_TEXT)),
            st.integers(min_value=0, max_value=8),
            st.sampled_from(
                ['"', "'", "[", "]", "=", "\n", "{", "}", ",", "x", "", "\\", "1", "#"]
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_mutations_of_the_repository_file_are_a_policy_or_a_config_error(
    edits: list[tuple[int, int, str]],
) -> None:
    text = REPO_TEXT
    for position, length, replacement in edits:
        text = text[:position] + replacement + text[position + length :]
    parses_or_config_error(text)


no_surrogates = st.characters(exclude_categories=["Cs"])
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(no_surrogates, max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "pattern", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def near(valid: list[object], invalid: list[object]) -> st.SearchStrategy[object]:
    """Mostly one of ``valid``, sometimes one of ``invalid``."""
    return st.sampled_from(valid * 4 + invalid)


periods = near(["180d", "7y", "18m", "2w"], ["0d", "-1d", "101y", "1x", "", "7 years"])
regexes = near(["faktura", r"REK-\d{4}", "."], ["(", "", "a|", "*"])
addresses = near(["@bank.se", "a@b.se", "*@*.se"], ["bank.se", ""])
header_tests: st.SearchStrategy[object] = st.builds(
    dict,
    name=near(["list-id", "to"], ["x-spam", "", 3]),
    pattern=regexes,
) | st.fixed_dictionaries({}, optional={"name": values, "pattern": values, "value": values})
# Mostly plausible values so the fuzzer gets past the first check and into the deep ones.
NEAR_VALID: dict[str, st.SearchStrategy[object]] = {
    "version": near([1], [2]),
    "timezone": near(["Europe/Stockholm", "UTC"], ["Nowhere/City", "", "../x"]),
    "default": periods,
    "keep_after_close": periods,
    "quarantine_grace": periods,
    "plan_ttl": periods,
    "keep": periods,
    "pattern": regexes,
    "auto_create": st.booleans(),
    "keyword": near(["$Reklamation"], ["two words", "\\Seen", ""]),
    "action": near(["move", "delete"], ["remove"]),
    "quarantine_folder": near(["Quarantine"], ["INBOX", "Old/*", "", "a\x00"]),
    "auto_approve_limit": st.integers(min_value=-3, max_value=10**6),
    "name": st.sampled_from(["a", "b", "c", "bad name", "", "å"]),
    "anchor": near(["received", "end_of_year"], ["end-of-year"]),
    "description": st.text(no_surrogates, max_size=5),
    "source": st.text(no_surrogates, max_size=5),
    "folder": near(["INBOX", "Junk*", ["a", "b"]], ["[", "", ["a", 1], []]),
    "sender": addresses | st.lists(addresses, max_size=3),
    "recipient": addresses | st.lists(addresses, max_size=3),
    "subject": regexes | st.lists(regexes, max_size=3),
    "header": header_tests | st.lists(header_tests, max_size=2),
}


def rarely(draw: st.DrawFn) -> bool:
    return draw(st.integers(min_value=0, max_value=19)) == 7


@st.composite
def table(
    draw: st.DrawFn, known: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, object]:
    """Some of ``known`` with near-valid values; now and then a wild value or unknown key."""
    result: dict[str, object] = {}
    for key in known:
        if key in required or draw(st.booleans()):
            result[key] = draw(values if rarely(draw) else NEAR_VALID[key])
    if rarely(draw):
        result[draw(st.sampled_from(["typo", "defualt", "kep", "sendr"]))] = draw(values)
    return result


rule_tables = st.tuples(
    table(("name", "keep", "anchor", "description", "source"), required=("name", "keep")),
    table(tuple(MATCHERS)),
).map(lambda parts: {**parts[0], "match": parts[1]})


@st.composite
def documents(draw: st.DrawFn) -> dict[str, object]:
    document: dict[str, object] = {
        "retention": draw(table(rules_module._RETENTION, required=("default",)))
    }
    for key in ("version", "timezone"):
        if draw(st.booleans()):
            document[key] = draw(NEAR_VALID[key])
    for key, known in (("cases", rules_module._CASES), ("purge", rules_module._PURGE)):
        if draw(st.booleans()):
            document[key] = draw(table(known))
    if draw(st.booleans()):
        document["rules"] = draw(st.lists(rule_tables, max_size=3))
    if rarely(draw):
        document[draw(st.sampled_from([*rules_module._TOP, "typo"]))] = draw(values)
    return document


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters as \\uXXXX escapes."""
    special = {'"', "\\", "\x7f"}
    return (
        '"'
        + "".join(f"\\u{ord(c):04x}" if c in special or ord(c) < 0x20 else c for c in text)
        + '"'
    )


def toml_value(value: object) -> str:
    """A minimal inline-TOML writer for the fuzzer (stdlib has no TOML writer)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(documents())
def test_structured_documents_are_a_policy_or_a_config_error(document: dict[str, object]) -> None:
    text = "\n".join(f"{toml_string(key)} = {toml_value(value)}" for key, value in document.items())
    parses_or_config_error(text)
