"""Mail as support staff see it on the web page: search, a conversation across folders,
one message's text, and linking a conversation to a complaint case.

**What a viewer may see is decided where the CLI decides it.** Search results and
conversations come from :func:`mailhygiene.reports.search` (a conversation is the query
``thread:ID``), and a single message is opened or linked only after
:func:`mailhygiene.lookup.resolve_messages` has found it for this viewer, as ``explain``
does — so mail under a restriction of processing stays hidden from everyone without
``restricted_read`` (callers pass ``include_restricted``), with no query of our own that
could forget it.

**Bodies are never stored.** A message's text is fetched from the IMAP server when it is
opened (``BODY.PEEK[]``: it stays unread) and only after the server proves it is the
indexed message (same UIDVALIDITY, same size). It becomes plain text: the ``text/plain``
part, or the ``text/html`` part with every tag dropped; mail HTML is never rendered.

**Linking** uses the case service exactly as ``mailhygiene tag`` / ``case open`` do, then
mirrors the case's keyword (``$Reklamation_REK-2025-0042``) to the server as ``mailhygiene
case mirror`` does, so the mark is visible in everyone's mail client at once. A server
that cannot be reached only delays the mark (the next sync or scheduled run sets it); the
link itself stands.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from typing import Any, Protocol

from mailhygiene import reports
from mailhygiene.cases import service as case_service
from mailhygiene.cases.detect import keyword_for_case
from mailhygiene.cases.mirror import KeywordServer, case_keyword_prefix
from mailhygiene.errors import ImapError, InputError, NotFoundError
from mailhygiene.holds import hold_lookup
from mailhygiene.lookup import resolve_messages
from mailhygiene.policy import Action, Policy, ReasonKind, Verdict, decide
from mailhygiene.query import Field, Query, Term
from mailhygiene.store import browse_queries, case_queries, facts_queries
from mailhygiene.store.session import Store

MAX_TEXT = 200_000
"""Characters of a message's text shown at most; the rest is cut with a note."""

_MAX_HTML = 2_000_000


class ConversationServer(KeywordServer, Protocol):
    """What the conversation pages need of a mail server (``ImapMailServer`` has it)."""

    def fetch_message(self, uid: int) -> bytes | None: ...


ServerFor = Callable[[str], AbstractContextManager[ConversationServer]]
"""Opens a connected server for an account name."""


@dataclass(frozen=True)
class VerdictLine:
    """A message's fate in one line: ``kept: case REK-2025-0042 open``."""

    action: str
    text: str
    purgeable_from: datetime | None


@dataclass(frozen=True)
class MessageRow:
    """One indexed message as a list shows it."""

    id: int
    account: str
    folder: str
    uid: int
    received: datetime | None
    sender: str
    recipients: str
    subject: str
    size: int
    flags: tuple[str, ...]
    message_id: str
    thread_id: str | None
    problems: str
    verdict: VerdictLine | None = None


@dataclass(frozen=True)
class SearchPage:
    query: str
    total: int
    offset: int
    limit: int
    messages: list[MessageRow]


@dataclass(frozen=True)
class LinkedCase:
    ref: str
    status: str
    how: str


@dataclass(frozen=True)
class ThreadPage:
    thread_id: str
    total: int
    offset: int
    limit: int
    messages: list[MessageRow]
    cases: list[LinkedCase]
    large: bool


@dataclass(frozen=True)
class MessageText:
    """A message's headers and body as safe plain text (to be escaped when shown)."""

    headers: list[tuple[str, str]]
    text: str
    source: str
    truncated: bool
    attachments: list[str]


@dataclass(frozen=True)
class MessageView:
    """One message: what the index says, why it is kept, and its text (or why not)."""

    row: MessageRow
    verdict: VerdictLine
    reasons: list[dict[str, Any]]
    cases: list[LinkedCase]
    content: MessageText | None
    problem: str


@dataclass
class LinkOutcome:
    """What linking did: the links, and the keyword on the server (or why not yet)."""

    ref: str
    keyword: str
    linked: int
    already_linked: int
    messages: int
    marked: int = 0
    pending: int = 0
    problems: list[str] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------


def search_page(
    store: Store,
    policy: Policy,
    query_text: str,
    *,
    limit: int,
    offset: int,
    include_restricted: bool = False,
) -> SearchPage:
    """One page of ``reports.search`` (newest first); ``InputError`` for a bad query."""
    page = reports.search(
        store,
        query_text,
        zone=policy.zone,
        account=None,
        limit=limit,
        offset=offset,
        include_restricted=include_restricted,
    )
    return SearchPage(
        page["query"], page["total"], offset, limit, [_row(m) for m in page["messages"]]
    )


def thread_page(
    store: Store,
    policy: Policy,
    thread_id: str,
    *,
    now: datetime,
    limit: int,
    offset: int,
    include_restricted: bool = False,
) -> ThreadPage:
    """One page of a conversation (every folder and account), each with its verdict."""
    try:
        query = Query((Term(Field.THREAD, thread_id),)).describe()
    except ValueError:
        raise NotFoundError(f"no conversation {thread_id!r}") from None
    page = reports.search(
        store,
        query,
        zone=policy.zone,
        account=None,
        limit=limit,
        offset=offset,
        include_restricted=include_restricted,
    )
    if page["total"] == 0:
        raise NotFoundError(
            f"no conversation {thread_id!r}; it may have been merged into another or purged"
        )
    rows = [_row(m) for m in page["messages"]]
    verdicts = message_verdicts(store, policy, [(r.id, r.account) for r in rows], now=now)
    with store.transaction() as session:
        links = case_queries.active_links(session, [thread_id]).get(thread_id, [])
    return ThreadPage(
        thread_id=thread_id,
        total=page["total"],
        offset=offset,
        limit=limit,
        messages=[_with_verdict(r, verdicts.get(r.id)) for r in rows],
        cases=[LinkedCase(link.ref, link.status, link.how) for link in links],
        large=page["total"] > case_service.CONFIRM_THREAD_MESSAGES,
    )


def message_verdicts(
    store: Store, policy: Policy, rows: Iterable[tuple[int, str]], *, now: datetime
) -> dict[int, VerdictLine]:
    """``policy.decide`` for these (row id, account) pairs at ``now``, holds and cases
    included — what ``reports.explain_message`` says, for a page of messages at once."""
    by_account: dict[str, list[int]] = defaultdict(list)
    for row_id, account in rows:
        by_account[account].append(row_id)
    lines: dict[int, VerdictLine] = {}
    if not by_account:
        return lines
    with store.transaction() as session:
        cases = facts_queries.case_links_by_thread(session)
        for account, row_ids in sorted(by_account.items()):
            holds_for = hold_lookup(session, account=account, zone=policy.zone)
            for indexed in facts_queries.iter_indexed(
                session, account=account, holds_for=holds_for, message_rows=row_ids, cases=cases
            ):
                verdict = decide(indexed.facts, policy, now)
                lines[indexed.message_row] = verdict_line(verdict, policy)
    return lines


def verdict_line(verdict: Verdict, policy: Policy) -> VerdictLine:
    """``kept: case REK-2025-0042 open`` / ``purgeable from 2026-03-01: default 180 days``."""
    deciding = verdict.reasons[0]
    label = _reason_label(deciding.kind, deciding.name, policy)
    until = verdict.keep_until
    if verdict.action is Action.PURGE:
        day = f" since {_day(until, policy)}" if until is not None else ""
        text = f"purgeable{day}: {label}"
    elif until is not None:
        text = f"purgeable from {_day(until, policy)}: {label}"
    else:
        text = f"kept: {label}"
    return VerdictLine(verdict.action.value, text, until)


def message_view(
    store: Store,
    policy: Policy,
    server_for: ServerFor,
    row_id: int,
    *,
    now: datetime,
    include_restricted: bool = False,
) -> MessageView:
    """A message with its verdict, every reason, and its text fetched from the server.

    A message this viewer may not see is not found (and not fetched). A server problem
    leaves the text out and says why.
    """
    _visible(store, policy, row_id, include_restricted)
    explained = reports.explain_message(store, policy, row_id, now=now)
    with store.transaction() as session:
        location = browse_queries.message_location(session, row_id)
        thread = explained["thread_id"]
        links = case_queries.active_links(session, [thread]).get(thread, []) if thread else []
    if location is None:
        raise NotFoundError(f"no indexed message with id {row_id}")
    verdict = message_verdicts(store, policy, [(row_id, location.account)], now=now).get(row_id)
    if verdict is None:
        raise NotFoundError(f"no indexed message with id {row_id}")
    row = MessageRow(
        id=row_id,
        account=location.account,
        folder=location.folder,
        uid=location.uid,
        received=explained["received"],
        sender=explained["from"] or "",
        recipients="",
        subject=explained["subject"] or "",
        size=location.size,
        flags=(),
        message_id=location.message_id,
        thread_id=thread,
        problems="",
    )
    content: MessageText | None = None
    problem = ""
    try:
        raw = _fetch(server_for, location)
    except ImapError as error:
        problem = f"the text could not be fetched from the mail server: {error}"
    else:
        if raw is None:
            problem = (
                "the message is no longer where the index says (moved, deleted, or the "
                "folder changed on the server); the next sync brings the index up to date"
            )
        else:
            content = message_text(raw)
    return MessageView(
        row=row,
        verdict=verdict,
        reasons=list(explained["reasons"]),
        cases=[LinkedCase(link.ref, link.status, link.how) for link in links],
        content=content,
        problem=problem,
    )


def open_case_refs(store: Store, *, limit: int = 200) -> list[str]:
    """The newest open cases' references, to suggest when linking."""
    with store.transaction() as session:
        return browse_queries.open_case_refs(session, limit=limit)


# -- linking -------------------------------------------------------------------------------


def link_thread(
    store: Store,
    policy: Policy,
    server_for: ServerFor,
    *,
    row_id: int,
    ref: str,
    actor: str,
    now: datetime,
    confirmed: bool = False,
    include_restricted: bool = False,
) -> LinkOutcome:
    """Link the conversation of message ``row_id`` to the open case ``ref`` (as ``tag``
    does) and set the case keyword on the server (as ``case mirror`` does)."""
    _visible(store, policy, row_id, include_restricted)
    result = case_service.tag(
        store,
        policy,
        target=str(row_id),
        ref=ref,
        actor=actor,
        now=now,
        confirmed=confirmed,
    )
    try:
        keyword = keyword_for_case(result.ref, case_keyword_prefix(policy))
    except InputError:  # a reference that cannot be a keyword is mirrored as nothing
        keyword = ""
    outcome = LinkOutcome(
        ref=result.ref,
        keyword=keyword,
        linked=len(result.linked),
        already_linked=len(result.already_linked),
        messages=result.selection.thread_messages,
    )
    with store.transaction() as session:
        accounts = browse_queries.thread_accounts(session, result.selection.thread_ids)
    for account in accounts:
        try:
            with server_for(account) as server:
                mirrored = case_service.mirror_keywords(
                    store, server, policy, account, now=now, actor=actor
                )
        except ImapError as error:
            # The link is made and protects the mail; the keyword follows at the next sync.
            outcome.problems.append(f"{account}: {error}")
            continue
        outcome.marked += mirrored.marked
        outcome.pending += mirrored.pending
        outcome.problems += [
            f"{account}/{f.folder}: {f.problem}" for f in mirrored.folders if f.problem
        ]
    return outcome


def open_case_and_link(
    store: Store,
    policy: Policy,
    server_for: ServerFor,
    *,
    row_id: int,
    ref: str,
    title: str,
    actor: str,
    now: datetime,
    confirmed: bool = False,
    include_restricted: bool = False,
) -> LinkOutcome:
    """Open the case ``ref`` (as ``case open``), then link the conversation to it."""
    _visible(store, policy, row_id, include_restricted)
    view = case_service.open_case(store, policy, ref=ref, title=title, actor=actor, now=now)
    return link_thread(
        store,
        policy,
        server_for,
        row_id=row_id,
        ref=view.ref,
        actor=actor,
        now=now,
        confirmed=confirmed,
        include_restricted=include_restricted,
    )


# -- message text ----------------------------------------------------------------------------


_SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\f\v\xa0]+")


def message_text(raw: bytes) -> MessageText:
    """Headers, body text and attachment names of an RFC 5322 message, as plain text.

    Prefers ``text/plain``; falls back to ``text/html`` reduced to its text. Control
    and bidirectional-override characters are removed (they could disguise text).
    Never raises for malformed mail: what cannot be decoded is shown replaced.
    """
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # the email package raises many kinds on hostile input
        return MessageText([], _clean(raw.decode("utf-8", "replace")), "raw", False, [])
    headers = [(name, _header(parsed, name)) for name in _SHOWN_HEADERS if parsed[name] is not None]
    attachments = _attachments(parsed)
    body: Message | None
    try:
        body = (
            parsed.get_body(preferencelist=("plain", "html"))
            if isinstance(parsed, EmailMessage)
            else None
        )
    except Exception:  # a broken MIME tree: no body part can be chosen
        body = None
    if body is None:
        return MessageText(headers, "", "none", False, attachments)
    content = _part_text(body)
    source = "text/plain"
    if body.get_content_type() == "text/html":
        content, source = html_to_text(content[:_MAX_HTML]), "text/html, shown as text"
    text = _clean(content)
    truncated = len(text) > MAX_TEXT
    return MessageText(headers, text[:MAX_TEXT], source, truncated, attachments)


def html_to_text(html: str) -> str:
    """The text of an HTML document: no tags, scripts, styles or comments; links keep
    their target in brackets so staff can see where a link really goes."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; anything left is hostile input
        return _clean(re.sub(r"<[^>]*>", " ", html))
    return parser.text()


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "tr",
            "li",
            "ul",
            "ol",
            "table",
            "blockquote",
            "section",
            "article",
            "header",
            "footer",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "hr",
            "pre",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skipping = 0
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self._parts.append("\n")
            if tag == "li":
                self._parts.append("• ")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and not self._skipping:
                self._parts.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self._parts.append("\n")
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and not self._skipping and href.startswith(("http:", "https:", "mailto:")):
                self._parts.append(f" [{href}]")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._parts.append(data)

    def text(self) -> str:
        lines = (_SPACES.sub(" ", line).strip() for line in "".join(self._parts).split("\n"))
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _part_text(part: Message) -> str:
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
    except Exception:  # unknown charset or broken transfer encoding
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return ""


def _header(message: Message, name: str) -> str:
    try:
        value = str(message[name])
    except Exception:  # an undecodable encoded word
        value = str(message.get(name, ""))
    return _clean(value).replace("\n", " ")


def _attachments(message: Message) -> list[str]:
    if not isinstance(message, EmailMessage):
        return []
    try:
        return [_clean(part.get_filename() or "(unnamed)") for part in message.iter_attachments()]
    except Exception:  # a broken MIME tree
        return ["(attachments could not be listed)"]


def _clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


# -- helpers -----------------------------------------------------------------------------------


def _visible(store: Store, policy: Policy, row_id: int, include_restricted: bool) -> None:
    """``NotFoundError`` unless this viewer may see message ``row_id`` (as ``explain``)."""
    resolve_messages(store, str(row_id), zone=policy.zone, include_restricted=include_restricted)


def _fetch(server_for: ServerFor, location: browse_queries.MessageLocation) -> bytes | None:
    """The message's bytes, or None when the server no longer has *this* message there."""
    with server_for(location.account) as server:
        status = server.select(location.folder, readonly=True)
        if location.uidvalidity is not None and status.uidvalidity != location.uidvalidity:
            # why: the folder was rebuilt; the UID may now name someone else's mail
            return None
        raw = server.fetch_message(location.uid)
    if raw is None or len(raw) != location.size:
        # why: not the message the index describes (RFC822.SIZE is the size of BODY[])
        return None
    return raw


def _row(values: dict[str, Any]) -> MessageRow:
    return MessageRow(
        id=values["id"],
        account=values["account"],
        folder=values["folder"],
        uid=values["uid"],
        received=values["internal_date"],
        sender=values["from"] or "",
        recipients=values["to"] or "",
        subject=values["subject"] or "",
        size=values["size"],
        flags=tuple((values["flags"] or "").split()),
        message_id=values["message_id"] or "",
        thread_id=values["thread_id"],
        problems=values["problems"] or "",
    )


def _with_verdict(row: MessageRow, verdict: VerdictLine | None) -> MessageRow:
    return replace(row, verdict=verdict)


def _reason_label(kind: ReasonKind, name: str, policy: Policy) -> str:
    if kind is ReasonKind.HOLD:
        return f"legal hold {name}"
    if kind is ReasonKind.CASE_OPEN:
        return f"case {name} open"
    if kind is ReasonKind.CASE_CLOSED:
        return f"case {name} closed"
    if kind is ReasonKind.CASE_KEYWORD:
        return f"marked {name} in a mail client"
    if kind is ReasonKind.RULE:
        rule = next((r for r in policy.rules if r.name == name), None)
        return f"rule {name}, {rule.keep.describe()}" if rule is not None else f"rule {name}"
    if kind is ReasonKind.NO_DATE:
        return "date unknown"
    return f"default {policy.default_keep.describe()}"


def _day(at: datetime, policy: Policy) -> str:
    return at.astimezone(policy.zone).date().isoformat()


__all__ = [
    "MAX_TEXT",
    "ConversationServer",
    "LinkOutcome",
    "LinkedCase",
    "MessageRow",
    "MessageText",
    "MessageView",
    "SearchPage",
    "ServerFor",
    "ThreadPage",
    "VerdictLine",
    "html_to_text",
    "link_thread",
    "message_text",
    "message_verdicts",
    "message_view",
    "open_case_and_link",
    "open_case_refs",
    "search_page",
    "thread_page",
    "verdict_line",
]
