"""Complaint cases: open, close, reopen, rename, tag and untag threads, list, show, review.

Every service here owns its transaction and audits each change (``case:open``,
``case:close``, ``case:reopen``, ``case:link``, ``case:unlink``). ``now`` and ``actor``
come from the caller (CLI, web, scheduler). The rules that run after every sync —
threading, linking by case number and by client keyword — are in
:mod:`mailhygiene.cases.linking`; mirroring to the server in :mod:`mailhygiene.cases.mirror`.

**Links are per thread.** Tagging one message links its whole conversation, in every
folder and account, and mail that joins the thread later is covered without a new link.
Every link records who, when and how (``manual``, ``pattern``, ``keyword``, ``merge``).

**Selecting messages** (``tag``/``untag``): ``<id@host>`` or a bare ``id@host`` is a
Message-ID (every copy), a number is an index row id (``mailhygiene search`` shows
them), anything else is a search query (``mailhygiene/query.py``). A query that matches
more than :data:`CONFIRM_LIMIT` messages or threads, or threads holding more than
:data:`CONFIRM_THREAD_MESSAGES` messages, needs ``confirmed=True`` (``--yes``).
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cases.detect import (
    case_from_keyword,
    find_case_refs,
    keyword_for_case,
    validate_case_ref,
)
from mailhygiene.cases.linking import (
    LARGE_THREAD,
    LinkHow,
    LinkResult,
    ReviewItem,
    ReviewKind,
    is_untriaged_ref,
    link_new_mail,
)
from mailhygiene.cases.mirror import (
    KeywordServer,
    MirrorResult,
    ServerFor,
    case_keyword_prefix,
    mirror_keywords,
    remove_case_keywords,
)
from mailhygiene.errors import InputError, NotFoundError
from mailhygiene.policy import Policy
from mailhygiene.query import parse_query
from mailhygiene.store import case_queries as cq
from mailhygiene.store import search_queries
from mailhygiene.store.models import Case, CaseThread
from mailhygiene.store.session import Session, Store

CONFIRM_LIMIT = 50
"""A selection matching more messages or threads than this needs confirmation."""

CONFIRM_THREAD_MESSAGES = LARGE_THREAD
"""Threads holding more messages than this together need confirmation: subject threading
can join unrelated mail with a recurring subject, and a link would keep all of it."""

_MESSAGE_ID = re.compile(r"<[^<>\s]+>|[^\s<>:\"]+@[^\s<>:\"]+")


def link_after_sync(store: Store, policy: Policy, account: str, now: datetime, actor: str) -> int:
    """Thread the account's new mail and link threads to cases; returns new links made.

    The scheduled run calls this after every sync (``scheduled.Linker``); the full
    outcome (merges, created cases, review items) is :func:`link_new_mail`'s result.
    """
    return link_new_mail(store, policy, account, now=now, actor=actor).linked


# -- views -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseView:
    """A case as people see it; ``protected_until`` is when its mail stops being kept
    because of the case (None while open)."""

    ref: str
    title: str
    status: str
    created_how: str
    opened_at: datetime
    opened_by: str
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None
    threads: int
    messages: int
    last_activity: datetime | None
    protected_until: datetime | None


@dataclass(frozen=True)
class ThreadLink:
    thread_id: str
    how: str
    linked_at: datetime
    linked_by: str
    note: str
    unlinked_at: datetime | None
    unlinked_by: str | None
    unlink_reason: str | None
    messages: int


@dataclass(frozen=True)
class CaseMessageView:
    row_id: int
    account: str
    folder: str
    uid: int
    thread_id: str
    message_id: str
    date: datetime | None
    from_addr: str
    subject: str
    has_keyword: bool


@dataclass(frozen=True)
class CaseDetail:
    case: CaseView
    threads: list[ThreadLink]
    history: list[ThreadLink]
    messages: list[CaseMessageView]
    folders: dict[str, int]


@dataclass(frozen=True)
class Selection:
    """What a MESSAGE argument selected."""

    kind: str  # message-id | row | query
    message_rows: tuple[int, ...]
    thread_ids: tuple[str, ...]
    thread_messages: int


@dataclass(frozen=True)
class TagResult:
    ref: str
    selection: Selection
    linked: tuple[str, ...]
    already_linked: tuple[str, ...]


@dataclass(frozen=True)
class UntagResult:
    ref: str
    selection: Selection
    unlinked: tuple[str, ...]
    keywords_removed_from: int
    keywords_kept: bool


@dataclass
class ReviewReport:
    items: list[ReviewItem] = field(default_factory=list)


# -- lifecycle -------------------------------------------------------------------------


def open_case(
    store: Store, policy: Policy, *, ref: str, title: str, actor: str, now: datetime
) -> CaseView:
    """Open a new case; threads whose subjects already name it are linked at once."""
    pattern = _pattern(policy)
    canonical = validate_case_ref(ref, pattern)
    with store.transaction() as session:
        existing = cq.get_case(session, canonical)
        if existing is not None:
            hint = (
                f"reopen it with 'mailhygiene case reopen {canonical}'"
                if existing.status == "closed"
                else f"see it with 'mailhygiene case show {canonical}'"
            )
            raise InputError(f"case {canonical} already exists ({existing.status}); {hint}")
        case = cq.add_case(
            session,
            ref=canonical,
            title=title.strip(),
            created_how="manual",
            actor=actor,
            now=now,
        )
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.CASE_OPEN,
            subject=canonical,
            data={"created_how": "manual"},
            at=now,
        )
        # Mail that named the case before it existed (auto_create off) joins it now.
        for thread, subjects in sorted(cq.threads_mentioning(session, canonical).items()):
            if any(canonical in find_case_refs(s, pattern) for s in subjects):
                _link(
                    session,
                    case,
                    thread,
                    LinkHow.PATTERN,
                    actor,
                    now,
                    "case number in the subject (found when the case was opened)",
                )
        return _view(session, case, policy)


def close_case(
    store: Store, policy: Policy, *, ref: str, reason: str, actor: str, now: datetime
) -> CaseView:
    """Close a case: its mail is kept ``case_keep_after_close`` longer, then normal rules."""
    with store.transaction() as session:
        case = _get(session, policy, ref)
        if case.status == "closed":
            raise InputError(f"case {case.ref} is already closed (since {case.closed_at:%Y-%m-%d})")
        case.status, case.closed_at, case.closed_by = "closed", now, actor
        case.close_reason = reason.strip() or None
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.CASE_CLOSE,
            subject=case.ref,
            data={"reason": case.close_reason or ""},
            at=now,
        )
        return _view(session, case, policy)


def reopen_case(store: Store, policy: Policy, *, ref: str, actor: str, now: datetime) -> CaseView:
    """Reopen a closed case: its mail is kept again until it is closed."""
    with store.transaction() as session:
        case = _get(session, policy, ref)
        if case.status == "open":
            raise InputError(f"case {case.ref} is open already")
        closed_at = case.closed_at
        case.status, case.closed_at, case.closed_by, case.close_reason = "open", None, None, None
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.CASE_REOPEN,
            subject=case.ref,
            data={"was_closed_at": closed_at},
            at=now,
        )
        return _view(session, case, policy)


def rename_case(
    store: Store,
    policy: Policy,
    *,
    ref: str,
    new_ref: str,
    actor: str,
    now: datetime,
    server_for: ServerFor | None = None,
) -> CaseView:
    """Give a case (typically an untriaged one) its real reference.

    When ``new_ref`` exists, the threads move to it and the old case is closed as
    merged; otherwise a case ``new_ref`` is opened with the old one's title and threads.
    Either way the old case stays on record (closed, reason ``renamed to …``).

    With ``server_for``, the old case's keyword (``$Reklamation_OLD``) is first removed
    from the threads' mail on the server — left there it would name a case the threads
    are no longer linked to, which keeps mail indefinitely (``policy.decide``). An IMAP
    failure stops the rename before anything changes; mirroring then sets the new
    case's keyword.
    """
    target_ref = validate_case_ref(new_ref, _pattern(policy))
    if server_for is not None:
        with store.transaction() as session:
            case = _get(session, policy, ref)
            threads = sorted({link.thread_id for link in cq.case_links(session, case.id)})
            messages = cq.messages_in_threads(session, threads)
        with suppress(InputError):  # a ref that cannot be a keyword was never mirrored
            old_keyword = keyword_for_case(case.ref, case_keyword_prefix(policy))
            remove_case_keywords(
                store, server_for, messages, dict.fromkeys(threads, (old_keyword,))
            )
    with store.transaction() as session:
        case = _get(session, policy, ref)
        if case.ref == target_ref:
            raise InputError(f"case {case.ref} already has that reference")
        target = cq.get_case(session, target_ref)
        if target is None:
            target = cq.add_case(
                session,
                ref=target_ref,
                title=case.title,
                created_how="manual",
                actor=actor,
                now=now,
            )
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.CASE_OPEN,
                subject=target_ref,
                data={"created_how": "manual", "renamed_from": case.ref},
                at=now,
            )
        elif target.status == "closed":
            raise InputError(
                f"case {target_ref} is closed; reopen it first ('mailhygiene case reopen "
                f"{target_ref}') so its new threads are kept"
            )
        threads = sorted({link.thread_id for link in cq.case_links(session, case.id)})
        cq.move_links(session, case.id, target.id, note=f"[moved from {case.ref} {now:%Y-%m-%d}]")
        for thread in threads:
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.CASE_LINK,
                subject=target_ref,
                data={"thread": thread, "how": "moved", "moved_from": case.ref},
                at=now,
            )
        if case.status == "open":
            case.status, case.closed_at, case.closed_by = "closed", now, actor
            case.close_reason = f"renamed to {target_ref}"
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.CASE_CLOSE,
                subject=case.ref,
                data={"reason": case.close_reason},
                at=now,
            )
        return _view(session, target, policy)


# -- tagging ---------------------------------------------------------------------------


def tag(
    store: Store,
    policy: Policy,
    *,
    target: str,
    ref: str,
    actor: str,
    now: datetime,
    confirmed: bool = False,
) -> TagResult:
    """Link the thread(s) of the selected message(s) to an open case (``how: manual``)."""
    with store.transaction() as session:
        _open_case_named(session, policy, ref)  # a bad ref fails before any work
    selection = select_messages(store, policy, target, actor=actor, now=now)
    _confirm(selection, confirmed, "tag")
    with store.transaction() as session:
        case = _open_case_named(session, policy, ref)
        active = cq.active_links(session, selection.thread_ids)
        linked: list[str] = []
        already: list[str] = []
        for thread in selection.thread_ids:
            if any(link.case_id == case.id for link in active.get(thread, ())):
                already.append(thread)
                continue
            _link(
                session,
                case,
                thread,
                LinkHow.MANUAL,
                actor,
                now,
                f"tagged by {selection.kind}",
                selected_by=selection.kind,
            )
            linked.append(thread)
        return TagResult(case.ref, selection, tuple(linked), tuple(already))


def untag(
    store: Store,
    policy: Policy,
    *,
    target: str,
    ref: str,
    reason: str,
    actor: str,
    now: datetime,
    server_for: ServerFor | None,
    confirmed: bool = False,
) -> UntagResult:
    """End the links of the selected thread(s) to a case, with a reason.

    First removes the keywords mailhygiene set for the case from those threads' mail on
    the server (``server_for``; the plain case keyword only where no other open case
    still holds the thread), then ends the links. An IMAP failure ends nothing. Without
    ``server_for`` the keywords stay; the thread is not linked again by them (a person
    decided), and ``case review`` lists it until someone removes them in a client.
    """
    if not reason.strip():
        raise InputError("untag needs a --reason: it is kept with the link's history")
    with store.transaction() as session:
        _get(session, policy, ref)  # a bad ref fails before any work
    selection = select_messages(store, policy, target, actor=actor, now=now)
    _confirm(selection, confirmed, "untag")
    with store.transaction() as session:
        case = _get(session, policy, ref)
        active = cq.active_links(session, selection.thread_ids)
        threads = [
            t
            for t in selection.thread_ids
            if any(link.case_id == case.id for link in active.get(t, ()))
        ]
        if not threads:
            raise NotFoundError(
                f"the selected message's thread is not linked to {case.ref}; "
                f"'mailhygiene case show {case.ref}' lists its threads"
            )
        keywords: dict[str, tuple[str, ...]] = {}
        for thread in threads:
            others_open = any(
                link.case_id != case.id and link.status == "open" for link in active.get(thread, ())
            )
            remove = [] if others_open else [policy.case_keyword]
            # A ref that cannot be a keyword cannot have been set by a client either.
            with suppress(InputError):
                remove.append(keyword_for_case(case.ref, case_keyword_prefix(policy)))
            keywords[thread] = tuple(remove)
        messages = cq.messages_in_threads(session, threads)
    removed = 0
    if server_for is not None:
        removed = remove_case_keywords(store, server_for, messages, keywords)
    with store.transaction() as session:
        case = _get(session, policy, ref)
        cq.unlink(session, case.id, threads, actor=actor, now=now, reason=reason.strip())
        for thread in threads:
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.CASE_UNLINK,
                subject=case.ref,
                data={
                    "thread": thread,
                    "reason": reason.strip(),
                    "keyword_removed": server_for is not None,
                },
                at=now,
            )
    return UntagResult(case.ref, selection, tuple(threads), removed, server_for is None)


def select_messages(
    store: Store, policy: Policy, target: str, *, actor: str, now: datetime
) -> Selection:
    """Resolve a MESSAGE argument to rows and threads (see the module docstring).

    Messages not threaded yet (synced, not linked) are threaded first, with the same
    rules as after a sync.
    """
    text = target.strip()
    if not text:
        raise InputError("give a Message-ID, an index id or a search query")
    with store.transaction() as session:
        kind, rows = _resolve(session, policy, text)
        threads = cq.threads_of_rows(session, rows)
        accounts = cq.accounts_of_rows(session, [r for r, t in threads.items() if t is None])
    for account in sorted(set(accounts.values())):
        link_new_mail(store, policy, account, now=now, actor=actor)
    with store.transaction() as session:
        threads = cq.threads_of_rows(session, rows)
        thread_ids = tuple(sorted({t for t in threads.values() if t is not None}))
        total = sum(cq.thread_sizes(session, thread_ids).values())
    return Selection(kind, tuple(sorted(rows)), thread_ids, total)


def _resolve(session: Session, policy: Policy, text: str) -> tuple[str, list[int]]:
    if text.isdigit():
        found = cq.message_thread_by_row(session, int(text))
        if found is None:
            raise NotFoundError(
                f"no indexed message with id {text}; 'mailhygiene search' shows ids"
            )
        return "row", [found[0]]
    if _MESSAGE_ID.fullmatch(text):
        message_id = text.strip("<>").lower()
        rows = [row for row, _t in cq.message_threads_by_message_id(session, message_id)]
        if not rows:
            raise NotFoundError(
                f"no indexed message has Message-ID <{message_id}>; run 'mailhygiene sync' "
                "if it arrived recently, or search with a query such as subject:…"
            )
        return "message-id", rows
    query = parse_query(text)
    rows = list(search_queries.matching_rows(session, query, zone=policy.zone))
    if not rows:
        raise NotFoundError(f"the query {query.describe()!r} matches no indexed message")
    return "query", rows


def _confirm(selection: Selection, confirmed: bool, verb: str) -> None:
    if confirmed:
        return
    big_selection = (
        len(selection.message_rows) > CONFIRM_LIMIT or len(selection.thread_ids) > CONFIRM_LIMIT
    )
    if big_selection or selection.thread_messages > CONFIRM_THREAD_MESSAGES:
        # why: one careless query could keep (or release) a large part of the mailbox
        raise InputError(
            f"this would {verb} {len(selection.thread_ids):,} thread(s) holding "
            f"{selection.thread_messages:,} message(s) ({len(selection.message_rows):,} "
            "matched); check with 'mailhygiene search', then add --yes to go ahead"
        )


# -- reading ---------------------------------------------------------------------------


def list_cases(store: Store, policy: Policy, *, status: str | None = None) -> list[CaseView]:
    with store.transaction() as session:
        return [_view_counts(counts, policy) for counts in cq.list_cases(session, status=status)]


def show_case(store: Store, policy: Policy, *, ref: str) -> CaseDetail:
    """The case, its threads (and unlink history) and every message across folders."""
    with store.transaction() as session:
        case = _get(session, policy, ref)
        view = _view(session, case, policy)
        links = cq.case_links(session, case.id, active_only=False)
        active_threads = sorted({link.thread_id for link in links if link.unlinked_at is None})
        messages = cq.case_messages(session, active_threads)
    per_thread: dict[str, int] = {}
    folders: dict[str, int] = {}
    wanted = {policy.case_keyword.casefold()}
    with suppress(InputError):
        wanted.add(keyword_for_case(view.ref, case_keyword_prefix(policy)).casefold())
    message_views = []
    for m in messages:
        per_thread[m.thread_id] = per_thread.get(m.thread_id, 0) + 1
        key = f"{m.account}/{m.folder}"
        folders[key] = folders.get(key, 0) + 1
        message_views.append(
            CaseMessageView(
                m.row_id,
                m.account,
                m.folder,
                m.uid,
                m.thread_id,
                m.message_id,
                m.date or m.internal_date,
                m.from_addr,
                m.subject,
                any(f.casefold() in wanted for f in m.flags),
            )
        )
    active = [_thread_link(link, per_thread) for link in links if link.unlinked_at is None]
    history = [_thread_link(link, per_thread) for link in links if link.unlinked_at is not None]
    return CaseDetail(view, active, history, message_views, dict(sorted(folders.items())))


def review(store: Store, policy: Policy) -> ReviewReport:
    """What needs a person now, derived from the index as it is (so nothing a run found is
    lost when nobody read its result): untriaged cases, keywords removed in a client,
    keywords or case numbers on threads a person unlinked, per-case keywords naming no
    case, very large linked threads, and mail that arrived after its case was closed."""
    report = ReviewReport()
    pattern = _pattern(policy)
    prefix = case_keyword_prefix(policy)
    with store.transaction() as session:
        for thread, size in sorted(cq.large_linked_threads(session, LARGE_THREAD).items()):
            report.items.append(
                ReviewItem(
                    ReviewKind.LARGE_THREAD,
                    thread,
                    None,
                    (),
                    f"a linked thread holds {size:,} messages, all kept by its case; mail "
                    "joined only by a recurring subject may not belong to it",
                )
            )
        for (thread, ref), rows in sorted(cq.mail_after_closing(session).items()):
            report.items.append(
                ReviewItem(
                    ReviewKind.CLOSED_CASE_MAIL,
                    thread,
                    ref,
                    tuple(rows),
                    f"{len(rows)} message(s) arrived after {ref} was closed; reopen it with "
                    f"'mailhygiene case reopen {ref}' if it needs handling",
                )
            )
        for (thread, ref), rows in sorted(cq.named_after_unlink(session).items()):
            report.items.append(
                ReviewItem(
                    ReviewKind.PATTERN_ON_UNLINKED,
                    thread,
                    ref,
                    tuple(rows),
                    f"new mail names {ref} in a thread a person unlinked from it; tag it "
                    "again if it belongs to the case",
                )
            )
        for counts in cq.list_cases(session, status="open"):
            if counts.case.created_how == "untriaged":
                report.items.append(
                    ReviewItem(
                        ReviewKind.UNTRIAGED,
                        "",
                        counts.case.ref,
                        (),
                        f"{counts.threads} thread(s) marked in a mail client without a case "
                        f"number; name it: mailhygiene case rename {counts.case.ref} REK-…",
                    )
                )
        for account in cq.account_names(session):
            lacking = cq.open_case_keywords_lacking(session, account, prefix)
            by_thread: dict[str, list[int]] = {}
            for lacks, _keyword in lacking:
                rows = by_thread.setdefault(lacks.thread_id, [])
                if lacks.row_id not in rows:
                    rows.append(lacks.row_id)
            links = cq.active_links(session, by_thread)
            for thread, rows in sorted(by_thread.items()):
                refs = sorted({link.ref for link in links.get(thread, ()) if link.status == "open"})
                report.items.append(
                    ReviewItem(
                        ReviewKind.KEYWORD_REMOVED,
                        thread,
                        refs[0] if refs else None,
                        tuple(rows),
                        f"{len(rows)} message(s) in {account} lack "
                        f"{prefix}{refs[0] if refs else '…'} on the server (removed in a mail "
                        "client, or not mirrored yet); still protected",
                    )
                )
            flagged = cq.flagged_messages(session, account, policy.case_keyword)
            threads = {m.thread_id for m in flagged if m.thread_id is not None}
            active = cq.active_links(session, threads)
            unlinked_threads = {t for _case, t in cq.unlinked_pairs(session, threads)}
            reported: set[str] = set()
            for message in flagged:
                if message.thread_id is None:
                    continue
                thread = message.thread_id
                for flag in message.flags:
                    if not flag.casefold().startswith(prefix.casefold()):
                        continue
                    named = case_from_keyword(flag, prefix, pattern=pattern)
                    if named is None or cq.get_case(session, named) is None:
                        report.items.append(
                            ReviewItem(
                                ReviewKind.UNKNOWN_CASE,
                                thread,
                                named,
                                (message.row_id,),
                                f"keyword {flag!r} names no case; open the case or remove "
                                "the keyword in the mail client",
                            )
                        )
                if thread in unlinked_threads and not active.get(thread) and thread not in reported:
                    reported.add(thread)
                    report.items.append(
                        ReviewItem(
                            ReviewKind.KEYWORD_ON_UNLINKED,
                            thread,
                            None,
                            (message.row_id,),
                            f"{policy.case_keyword} is set, but a person unlinked this thread; "
                            "tag it again or remove the keyword in the mail client",
                        )
                    )
    return report


# -- helpers ---------------------------------------------------------------------------


def _pattern(policy: Policy) -> re.Pattern[str]:
    try:
        return re.compile(policy.case_pattern)
    except re.error as error:  # Policy validates it; a hand-built one may not
        raise InputError(
            f"case pattern {policy.case_pattern!r} is not a valid regular expression: {error}"
        ) from None


def _get(session: Session, policy: Policy, ref: str) -> Case:
    """The case ``ref``; a malformed ref and an unknown one are different errors."""
    text = ref.strip().upper()
    if not is_untriaged_ref(text):
        text = validate_case_ref(ref, _pattern(policy))
    case = cq.get_case(session, text)
    if case is None:
        raise NotFoundError(
            f"no case {text}; 'mailhygiene case list' shows the cases, "
            f"'mailhygiene case open {text} --title …' creates it"
        )
    return case


def _open_case_named(session: Session, policy: Policy, ref: str) -> Case:
    case = _get(session, policy, ref)
    if case.status != "open":
        raise InputError(
            f"case {case.ref} is closed; reopen it first ('mailhygiene case reopen "
            f"{case.ref}') — closed cases only keep mail for a while after closing"
        )
    return case


def _link(
    session: Session,
    case: Case,
    thread: str,
    how: LinkHow,
    actor: str,
    now: datetime,
    note: str,
    *,
    selected_by: str | None = None,
) -> None:
    cq.add_link(
        session, case_id=case.id, thread_id=thread, how=how.value, actor=actor, now=now, note=note
    )
    data: dict[str, object] = {"thread": thread, "how": how.value}
    if selected_by is not None:
        data["selected_by"] = selected_by
    audit.append(session, actor=actor, tag=AuditTag.CASE_LINK, subject=case.ref, data=data, at=now)


def _protected_until(case: Case, policy: Policy) -> datetime | None:
    if case.status == "open" or case.closed_at is None:
        return None
    try:
        local = policy.case_keep_after_close.add_to(case.closed_at.astimezone(policy.zone))
        return local.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _view(session: Session, case: Case, policy: Policy) -> CaseView:
    for counts in cq.list_cases(session, status=None, case_id=case.id):
        return _view_counts(counts, policy)
    raise NotFoundError(f"no case {case.ref}")  # pragma: no cover - just written


def _view_counts(counts: cq.CaseCounts, policy: Policy) -> CaseView:
    case = counts.case
    return CaseView(
        ref=case.ref,
        title=case.title,
        status=case.status,
        created_how=case.created_how,
        opened_at=case.opened_at,
        opened_by=case.opened_by,
        closed_at=case.closed_at,
        closed_by=case.closed_by,
        close_reason=case.close_reason,
        threads=counts.threads,
        messages=counts.messages,
        last_activity=counts.last_activity,
        protected_until=_protected_until(case, policy),
    )


def _thread_link(link: CaseThread, per_thread: dict[str, int]) -> ThreadLink:
    return ThreadLink(
        link.thread_id,
        link.how,
        link.linked_at,
        link.linked_by,
        link.note,
        link.unlinked_at,
        link.unlinked_by,
        link.unlink_reason,
        per_thread.get(link.thread_id, 0),
    )


__all__ = [
    "CONFIRM_LIMIT",
    "CONFIRM_THREAD_MESSAGES",
    "CaseDetail",
    "CaseMessageView",
    "CaseView",
    "KeywordServer",
    "LinkResult",
    "MirrorResult",
    "ReviewReport",
    "Selection",
    "ServerFor",
    "TagResult",
    "ThreadLink",
    "UntagResult",
    "close_case",
    "link_after_sync",
    "link_new_mail",
    "list_cases",
    "mirror_keywords",
    "open_case",
    "rename_case",
    "reopen_case",
    "review",
    "select_messages",
    "show_case",
    "tag",
    "untag",
]
