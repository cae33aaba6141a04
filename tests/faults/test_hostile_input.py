"""Hostile input: fuzzed rules.toml, search queries, folder names and keywords.

About 11,000 hypothesis cases in all (``MH_FUZZ_SCALE=0.1`` for a quick local run):

* ``rules.toml`` text (fragments of TOML, structured documents with hostile values,
  mutations of the repository file) gives a ``Policy`` or a ``ConfigError`` naming the
  file — nothing else; and a policy that loads cannot smuggle a command into IMAP (its
  quarantine folder quotes, its case keyword is an atom).
* Search query text gives a ``Query`` or an ``InputError``; every ``Query`` re-parses
  from its description (holds are stored that way), runs through
  ``store/search_queries`` on SQLite without error, and cannot change the database
  (row counts and schema compared after every case; SQL injection strings included).
* Folder names and keywords with quotes, backslashes, non-ASCII, CR LF and NUL:
  ``quote_mailbox`` / ``keyword_atom`` refuse or give exactly one safe token; against a
  real Dovecot, CREATE with a nasty-but-legal name creates exactly that folder and
  nothing else, and a keyword is stored as exactly that keyword.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from imapclient import imap_utf7
from sqlalchemy import text

from mailhygiene.config.rules import parse_rules
from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.errors import ConfigError, ImapError, InputError
from mailhygiene.imap.wire import keyword_atom, quote_mailbox
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.policy import Policy
from mailhygiene.query import FIELDS, Query, parse_query
from mailhygiene.store import index_queries, search_queries
from mailhygiene.store.models import Case, CaseThread
from mailhygiene.store.session import Store, open_store
from tests.faults.world import FaultWorld, drop_world, new_world

REPO = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("MH_FUZZ_SCALE", "1"))
ZONE = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(10, int(examples * SCALE)),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def fragments(pieces: list[str], max_size: int) -> st.SearchStrategy[str]:
    """Text made of ``pieces``: one byte string per example, each byte picking a piece
    (cheap for hypothesis, and every piece is a token the parser cares about)."""
    table = [pieces[i % len(pieces)] for i in range(256)]
    return st.binary(max_size=max_size).map(lambda raw: "".join(table[b] for b in raw))


HOSTILE_STRINGS = [
    "'; DROP TABLE messages; --",
    "' OR '1'='1",
    '"; DROP TABLE accounts; --',
    "\x00",
    "\r\n",
    "\r\nA001 LOGOUT\r\n",
    "\\",
    '\\"',
    "%",
    "_",
    "*",
    "{5}\r\nhello",
    "../../../etc/passwd",
    "$(reboot)",
    "`id`",
    "\u202e",
    "\ud800",
    "😀",
    "ÅÄÖ",
    "a" * 300,
]

# -- rules.toml ----------------------------------------------------------------------

TOML_PIECES = [
    "[retention]\n",
    "default = ",
    '"180d"',
    '"0d"',
    '"-5d"',
    '"99999999999y"',
    "\n",
    "[cases]\n",
    "pattern = ",
    '"REK-\\\\d{4}-\\\\d{4}"',
    '"(a+)+$"',
    '"["',
    '"(?P<x"',
    "keyword = ",
    '"$Reklamation"',
    '"$Rek\\r\\nA1 LOGOUT"',
    '"\\\\Deleted"',
    '""',
    "[purge]\n",
    "quarantine_folder = ",
    '"Quarantine"',
    '"Q\\r\\nA1 DELETE INBOX"',
    '"Q\\u0000"',
    '"Q\\"x"',
    "action = ",
    '"move"',
    '"delete"',
    '"rm -rf"',
    "auto_approve_limit = ",
    "-1",
    "0",
    "1e309",
    "9223372036854775808",
    "true",
    "timezone = ",
    '"Europe/Stockholm"',
    '"../../etc/passwd"',
    '"UTC"',
    '"Mars/Olympus"',
    "[[rules]]\n",
    "name = ",
    '"r"',
    "keep = ",
    '"7y"',
    "anchor = ",
    '"received"',
    "[rules.match]\n",
    "sender = ",
    "subject = ",
    "folder = ",
    '["a", 1]',
    "{x = 1}",
    "version = ",
    "1",
    "2",
    " ",
    "=",
    '"',
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "\\",
    "\x00",
    "\ufeff",
    "ä",
    "\r",
    "a.b.c = 1\n",
    "[a.b.c]\n",
]


def assert_policy_or_config_error(toml_text: str) -> Policy | None:
    try:
        policy = parse_rules(toml_text, source="rules.toml")
    except ConfigError as error:
        problem: str | None = str(error)
    else:
        problem = None
    if problem is not None:
        assert problem.startswith("rules.toml"), problem
        return None
    # A policy that loads must not be able to inject anything into IMAP.
    quote_mailbox(policy.quarantine_folder)
    if policy.case_keyword:
        keyword_atom(policy.case_keyword)
    return policy


@pytest.mark.slow
@fuzz(2500)
@given(fragments(TOML_PIECES, 40))
def test_rules_toml_fragments_give_a_policy_or_a_config_error(toml_text: str) -> None:
    assert_policy_or_config_error(toml_text)


def toml_string(value: str) -> str:
    return (
        '"'
        + "".join(
            f"\\u{ord(c):04x}" if c in '"\\\x7f' or ord(c) < 0x20 else c
            for c in value
            if not 0xD800 <= ord(c) <= 0xDFFF
        )
        + '"'
    )


TOML_VALUES = [
    *(toml_string(v) for v in HOSTILE_STRINGS),
    *(
        toml_string(v)
        for v in (
            "180d",
            "0d",
            "-5d",
            "7y",
            "99999999999999y",
            "1m",
            "3w",
            "",
            "Quarantine",
            "INBOX",
            "move",
            "delete",
            "received",
            "sent",
            "Europe/Stockholm",
            "UTC",
            "../../../../etc/passwd",
            "$Reklamation",
            "\\Deleted",
            "$Rek A1 LOGOUT",
            "(a+)+$",
            "[",
            "REK-\\d{4}",
            "anna@example.com",
            "*",
            "Q\r\nA1 DELETE x",
        )
    ),
    "0",
    "-1",
    "1",
    "7",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "nan",
    "inf",
    "true",
    "false",
    "[]",
    "{}",
    '["a", 1]',
    '["x", "y"]',
    '{pattern = "x"}',
    "1979-05-27T07:32:00Z",
    '"""multi\nline"""',
    "'literal\\'",
]
SECTION_KEYS = {
    "": ("version", "timezone"),
    "retention": ("default",),
    "cases": ("pattern", "auto_create", "keyword", "keep_after_close"),
    "purge": ("action", "quarantine_folder", "quarantine_grace", "auto_approve_limit", "plan_ttl"),
    "rule": ("name", "description", "source", "keep", "anchor"),
    "match": ("sender", "subject", "folder", "header", "list_id", "to", "age", "bogus"),
}


def rules_document(raw: bytes) -> str:
    """A rules.toml built from ``raw``: each byte picks a section, key or value (mostly
    the right keys with hostile values), so one cheap draw explores the loader."""
    picks = iter(raw)

    def pick(options: list[str] | tuple[str, ...]) -> str:
        return options[next(picks, 0) % len(options)]

    lines: list[str] = []
    for section in ("", "retention", "cases", "purge"):
        if section:
            lines.append(f"[{section}]")
        for key in SECTION_KEYS[section]:
            if next(picks, 1) % 3:
                lines.append(f"{key} = {pick(TOML_VALUES)}")
    for number in range(next(picks, 0) % 3):
        lines.append("[[rules]]")
        lines.append(f"name = {toml_string(f'r{number}')}")
        for key in SECTION_KEYS["rule"]:
            if next(picks, 0) % 2:
                lines.append(f"{key} = {pick(TOML_VALUES)}")
        lines.append("[rules.match]")
        for _ in range(1 + next(picks, 0) % 2):
            lines.append(f"{pick(SECTION_KEYS['match'])} = {pick(TOML_VALUES)}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@fuzz(2000)
@given(st.binary(min_size=8, max_size=48).map(rules_document))
@example('[retention]\ndefault = "180d"\n[purge]\nquarantine_folder = "Q\\r\\nA1 DELETE x"\n')
@example('[retention]\ndefault = "180d"\n[cases]\nkeyword = "$Rek A1 LOGOUT"\n')
@example('timezone = "../../../../etc/passwd"\n[retention]\ndefault = "180d"\n')
@example('[retention]\ndefault = "99999999999999999999y"\n')
def test_structured_rules_with_hostile_values_give_a_policy_or_a_config_error(
    toml_text: str,
) -> None:
    assert_policy_or_config_error(toml_text)


REPO_RULES = (REPO / "rules.toml").read_text(encoding="utf-8")


@pytest.mark.slow
@fuzz(1000)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(REPO_RULES)), st.integers(0, 12), st.sampled_from(TOML_PIECES)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_repository_rules_give_a_policy_or_a_config_error(
    edits: list[tuple[int, int, str]],
) -> None:
    mutated = REPO_RULES
    for position, length, replacement in edits:
        mutated = mutated[:position] + replacement + mutated[position + length :]
    assert_policy_or_config_error(mutated)


# -- search queries --------------------------------------------------------------------


@dataclass(frozen=True)
class IndexDb:
    store: Store
    fingerprint: tuple[object, ...]  # row counts and schema when it was built


@pytest.fixture(scope="module")
def index_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexDb]:
    """A small SQLite index: two accounts, folders with awkward names, a case."""
    path = tmp_path_factory.mktemp("hostile") / "mh.db"
    store = open_store(f"sqlite:///{path}")
    with store.transaction() as session:
        for account in ("support", "o'brien"):
            account_id = index_queries.ensure_account(session, account, "h", "u", NOW)
            for name in ("INBOX", "Arkiv/2024", 'Quo"te\\d', "50% off_"):
                folder = index_queries.ensure_folder(session, account_id, name)
                index_queries.insert_messages(
                    session,
                    folder.id,
                    [
                        IndexedMessage(
                            uid=uid,
                            flags=("\\Seen", "$Reklamation") if uid % 3 else (),
                            internal_date=NOW - timedelta(days=uid * 40),
                            size=1000 * uid,
                            modseq=None,
                            message_id=f"m{uid}.{folder.id}@example.com",
                            in_reply_to="",
                            references=(),
                            thread_index="",
                            thread_topic="",
                            subject=[
                                "Trasig leverans",
                                "'; DROP TABLE messages; --",
                                "50% rabatt",
                                "a_b\\c",
                                "ÅÄÖ räksmörgås",
                            ][uid % 5],
                            from_addr=["anna@example.com", "o'neil@x.example", "%@_"][uid % 3],
                            from_name="",
                            to_addrs=("support@promix.example",),
                            cc_addrs=(),
                            reply_to=(),
                            date_header=None,
                            date_raw=None,
                        )
                        for uid in range(1, 13)
                    ],
                    NOW,
                )
        session.execute(text("UPDATE messages SET thread_id = 't' || (id % 4)"))
        case = Case(
            ref="REK-2025-0042",
            title="x",
            status="open",
            created_how="manual",
            opened_at=NOW,
            opened_by="s",
        )
        session.add(case)
        session.flush()
        session.add(
            CaseThread(
                case_id=case.id, thread_id="t1", how="manual", linked_at=NOW, linked_by="s", note=""
            )
        )
    yield IndexDb(store, db_fingerprint(store))
    store.close()


def db_fingerprint(store: Store) -> tuple[object, ...]:
    """Every table's row count and the whole schema, in one statement."""
    with store.engine.connect() as connection:
        tables = FINGERPRINT_TABLES or [
            r[0]
            for r in connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            )
        ]
        FINGERPRINT_TABLES[:] = tables
        # the table names come from sqlite_master, not from a test input
        counts = ", ".join(f'(SELECT count(*) FROM "{name}")' for name in tables)  # noqa: S608
        row = connection.execute(
            text(
                f"SELECT {counts}, (SELECT group_concat(type || name || coalesce(sql, ''), ';') "  # noqa: S608
                "FROM sqlite_master)"
            )
        ).one()
    return tuple(row)


FINGERPRINT_TABLES: list[str] = []


QUERY_PIECES = [
    *(f"{name}:" for name in FIELDS),
    "FROM:",
    "Subject:",
    "nosuch:",
    "-",
    "-",
    " ",
    " ",
    '"',
    '"',
    '\\"',
    "\\",
    "\\\\",
    ":",
    "<",
    ">",
    "\t",
    "\r\n",
    "\x00",
    "\x1b",
    "\ud800",
    *HOSTILE_STRINGS,
    "2025-01-01",
    "2025-02-30",
    "10k",
    "2M",
    "99999999999999999999",
    "REK-2025-0042",
    "$Reklamation",
    "\\Seen",
    "INBOX",
    "inbox",
    "Arkiv/2024",
    "anna",
    "anna@example.com",
    "@example.com",
    "o'neil",
    "50%",
    "a_b",
    "ÅÄÖ",
    "räksmörgås",
    "t1",
    "m3.1@example.com",
    "<M3.1@Example.com>",
    "OR",
    "AND",
    "NOT",
    "(",
    ")",
    ";",
]
INJECTIONS = [
    "'; DROP TABLE messages; --",
    'subject:"\'; DROP TABLE messages; --"',
    "from:o'neil@x.example",
    'folder:"Quo\\"te\\\\d"',
    "folder:INBOX' OR '1'='1",
    "account:o'brien",
    "msgid:<x'); DELETE FROM messages; -->",
    "keyword:$Reklamation) OR 1=1 --",
    "case:REK'--",
    "thread:t1' UNION SELECT sql FROM sqlite_master --",
    'subject:"%" -subject:"_" from:%@_',
    "\"; ATTACH DATABASE '/tmp/x.db' AS x; --\"",
]


def run_query(db: IndexDb, query_text: str) -> None:
    store = db.store
    try:
        query = parse_query(query_text)
    except InputError as error:
        message: str | None = str(error)
    else:
        message = None
    if message is not None:
        assert message
        assert "\n" not in message
        return
    assert isinstance(query, Query)
    assert parse_query(query.describe()) == query  # holds are stored as their description
    with store.transaction() as session:
        rows = list(search_queries.matching_rows(session, query, zone=ZONE))
        assert len(rows) == len(set(rows))
        assert search_queries.count_matching(session, query, zone=ZONE) == len(rows)
        page = search_queries.search_messages(
            session, query, zone=ZONE, account=None, limit=5, offset=0
        )
        assert len(page) == min(5, len(rows))
        list(search_queries.matching_rows(session, query, zone=ZONE, account="o'brien"))
    assert db_fingerprint(store) == db.fingerprint, f"{query_text!r} changed the database"


@pytest.mark.slow
@fuzz(2000)
@given(fragments(QUERY_PIECES, 12))
def test_fuzzed_query_text_is_an_input_error_or_a_harmless_query(
    index_db: IndexDb, query_text: str
) -> None:
    run_query(index_db, query_text)


QUERY_VALUES = [*HOSTILE_STRINGS, *QUERY_PIECES[len(FIELDS) + 3 :]]


def structured_query(raw: bytes) -> str:
    """field:"value" terms built from ``raw``: right field names, hostile quoted values."""
    picks = iter(raw)
    terms = []
    for _ in range(1 + next(picks, 0) % 3):
        field = [*FIELDS, "text"][next(picks, 0) % (len(FIELDS) + 1)]
        value = "".join(
            QUERY_VALUES[next(picks, 0) % len(QUERY_VALUES)] for _ in range(1 + next(picks, 0) % 3)
        )
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        sign = "-" if next(picks, 0) % 4 == 0 else ""
        terms.append(sign + (quoted if field == "text" else f"{field}:{quoted}"))
    return " ".join(terms)


@pytest.mark.slow
@fuzz(1500)
@given(st.binary(min_size=3, max_size=16).map(structured_query))
def test_structured_queries_with_hostile_values_cannot_change_the_database(
    index_db: IndexDb, query_text: str
) -> None:
    run_query(index_db, query_text)


@pytest.mark.slow
@fuzz(300)
@given(st.text(max_size=40))
def test_arbitrary_unicode_queries_cannot_change_the_database(
    index_db: IndexDb, query_text: str
) -> None:
    run_query(index_db, query_text)


@pytest.mark.parametrize("query_text", INJECTIONS)
def test_sql_injection_attempts_are_plain_values(index_db: IndexDb, query_text: str) -> None:
    run_query(index_db, query_text)
    with contextlib.suppress(InputError), index_db.store.transaction() as session:
        query = parse_query(query_text)
        everything = search_queries.count_matching(session, parse_query("larger:0"), zone=ZONE)
        assert search_queries.count_matching(session, query, zone=ZONE) < everything


# -- folder names and keywords ------------------------------------------------------

_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")  # RFC 3501 §9


def one_quoted_token(encoded: bytes) -> str:
    """The mailbox name a server reads from ``encoded``, which must be one quoted string."""
    match = _QUOTED.fullmatch(encoded)
    assert match is not None, f"{encoded!r} is not exactly one IMAP quoted string"
    inner = re.sub(rb"\\(.)", rb"\1", match.group(1))
    assert inner.isascii()
    return str(imap_utf7.decode(inner))


NAME_PIECES = [
    '"',
    "\\",
    "\r",
    "\n",
    "\x00",
    "&",
    "&-",
    "%",
    "*",
    "{",
    "}",
    "(",
    ")",
    " ",
    "/",
    "]",
    "~",
    ".",
    "Å",
    "ö",
    "€",
    "😀",
    "\u202e",
    "\x7f",
    "\x1b",
    "a",
    "Z",
    "-",
    "$",
    "_",
    "INBOX",
    "{5}\r\n",
    "A001 LOGOUT",
]


def check_quoted_name(name: str) -> None:
    try:
        encoded = quote_mailbox(name)
    except InputError:
        assert any(ch in name for ch in "\r\n\x00"), f"refused a legal name {name!r}"
        return
    except UnicodeEncodeError:
        assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in name)  # lone surrogates
        return
    assert not any(byte in encoded for byte in (b"\r", b"\n", b"\x00"))
    assert one_quoted_token(encoded) == name


@pytest.mark.slow
@fuzz(1500)
@given(fragments(NAME_PIECES, 10))
@example('a"b\\c')
@example("INBOX\r\nA001 DELETE INBOX")
@example("x{5}\r\nhello")
@example("Ärenden & Co")
def test_quote_mailbox_refuses_or_gives_one_token_that_means_the_name(name: str) -> None:
    check_quoted_name(name)


@pytest.mark.slow
@fuzz(200)
@given(st.text(max_size=16))
def test_quote_mailbox_on_arbitrary_unicode(name: str) -> None:
    check_quoted_name(name)


def check_keyword(keyword: str) -> None:
    try:
        encoded = keyword_atom(keyword)
    except InputError:
        return
    assert _ATOM.fullmatch(encoded), encoded
    assert encoded.decode("ascii") == keyword


@pytest.mark.slow
@fuzz(1000)
@given(fragments(NAME_PIECES, 6))
@example("$Reklamation")
@example("$Rek)\r\nA1 LOGOUT")
@example("\\Deleted")
def test_keyword_atom_refuses_or_gives_one_atom(keyword: str) -> None:
    check_keyword(keyword)


@pytest.mark.slow
@fuzz(200)
@given(st.text(max_size=10))
def test_keyword_atom_on_arbitrary_unicode(keyword: str) -> None:
    check_keyword(keyword)


NASTY_LEGAL_NAMES = [
    'Quo"te',
    "Back\\slash",
    'Both "\\" mixed\\"',
    "Ärenden & Co",
    "&-literal ampersand",
    "日本語",
    "emoji 😀",
    " leading space",
    "trailing space ",
    "paren (x)",
    "brace {5}",
    "percent 50%",
    "star *",
    "x%",
    "x*",
    "\u202eRTL",
]


@pytest.fixture
def nasty_world(dovecot: ThrowawayDovecot, tmp_path: Path) -> Iterator[FaultWorld]:
    made = new_world(dovecot, f"sqlite:///{tmp_path / 'mh.db'}")
    yield made
    drop_world(made)


@pytest.mark.dovecot
def test_create_with_a_nasty_legal_name_creates_exactly_that_folder(
    nasty_world: FaultWorld,
) -> None:
    wrong = []
    with nasty_world.server() as server:
        server.create_folder("x1")  # something a wildcard in a later name could match
        for name in NASTY_LEGAL_NAMES:
            before = set(server.list_folders())
            try:
                server.create_folder(name)
            except ImapError as error:  # the server may refuse a name; then nothing changes
                if set(server.list_folders()) != before:
                    wrong.append(f"{name!r}: refused ({error}) but folders changed")
                continue
            added = set(server.list_folders()) - before
            if added != {name}:
                wrong.append(f"{name!r}: CREATE added {sorted(added)}")
            try:
                server.select(name)
            except ImapError as error:
                wrong.append(f"{name!r}: cannot be selected after CREATE: {error}")
        for name in ("INBOX\r\nA001 DELETE INBOX", "x\x00y", "x\ny"):
            before = set(server.list_folders())
            with pytest.raises(InputError):
                server.create_folder(name)
            assert set(server.list_folders()) == before
        assert "INBOX" in server.list_folders()
    assert not wrong, "\n".join(wrong)


@pytest.mark.dovecot
def test_a_nasty_keyword_is_stored_as_exactly_that_keyword(nasty_world: FaultWorld) -> None:
    nasty_world.append("INBOX", "k1", NOW)
    with nasty_world.server() as server:
        server.select("INBOX", readonly=False)
        for keyword in ("$Rek_REK-2025-0042", "$a'b", "$a&b", "$x.y-z", "$Ärende"):
            try:
                atom = keyword_atom(keyword)
            except InputError:
                assert not keyword.isascii()
                continue
            assert atom
            server.add_flags([1], [keyword])
        with pytest.raises(InputError):
            server.add_flags([1], ["$Rek) \r\nA1 LOGOUT"])
        flags = server.fetch_flags([1])[0].flags
    assert sorted(flags) == sorted(["$Rek_REK-2025-0042", "$a'b", "$a&b", "$x.y-z"])


@pytest.mark.dovecot
@pytest.mark.parametrize(
    "message_id",
    [
        "å@x.example",
        "a\x80b@x",
        *('a"b@x', "a\\b@x", "", "a b@x", "x{5}@y", "%*@x"),
    ],
)
def test_searching_a_hostile_message_id_never_raises(
    nasty_world: FaultWorld, message_id: str
) -> None:
    """Resume and quarantine restore look messages up by Message-ID, which comes from the
    mail itself (8-bit headers are decoded): any value must give a UID list, not a crash."""
    with nasty_world.server() as server:
        server.select("INBOX", readonly=False)
        assert server.search_message_id(message_id) == []
