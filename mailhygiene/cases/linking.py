"""After a sync: give new mail its thread, and link threads to cases by number and keyword.

``link_new_mail`` runs in one transaction:

1. **Threading.** The account's messages without a thread id are threaded against every
   threaded message in the index (all accounts), with :class:`~mailhygiene.threads.
   ThreadRegistry`. Only the part of the index that can matter is loaded: messages that
   share a Message-ID/References id or an Outlook conversation with the new mail, and
   messages with the same normalised subject dated within two subject windows of it
   (a subject link reaches one window; the second covers entries a linked neighbour
   reaches, which already share its thread). That gives the same ids as threading
   everything, at a fraction of the cost.
2. **Merges.** When new mail joins threads (a reply referencing two conversations), the
   thread with the oldest message survives; messages *and case links* of the others are
   re-pointed to it. **Both cases keep their links**: a merged thread linked to cases A
   and B is kept while either is open, and each case lists the whole thread. Each
   re-pointed link gets a note and a ``case:link`` audit event with ``how: merge``.
3. **Case numbers** (``policy.case_pattern``) in the subjects of the new mail link its
   thread (``how: pattern``), creating the case when ``policy.case_auto_create``
   (``created_how: pattern``); otherwise only existing cases are linked.
4. **Keywords** set in a mail client. A per-case keyword (``$Reklamation_REK-2025-0042``)
   links the thread to that case (created when allowed). The plain keyword
   (``$Reklamation``) on a thread that is not linked yet links it to the case whose
   number appears in the thread's subjects, else to a new *untriaged* case
   (``UNTRIAGED-YYYYMMDD-N``) that a person names with ``case rename``.
   A thread that already has an active link is left alone by the plain keyword, even
   when its cases are closed: the case protects the thread, and the plain keyword
   keeps the marked message itself (``policy.decide``). Mirroring writes per-case
   keywords only, so a plain keyword is always a person's mark.
5. **Review.** Nothing here ever unlinks. A keyword removed in a client on a linked
   thread, a keyword or case number on a thread a person explicitly unlinked (that
   decision is not overridden automatically: only ``tag`` links it again), a malformed
   per-case keyword, a number naming no case while ``auto_create`` is off, a linked
   thread of more than :data:`LARGE_THREAD` messages, and new mail in a thread whose
   cases are all closed are reported as :class:`ReviewItem` (``case review`` derives the
   same list from the index at any time).

New mail joining an already linked thread needs no new link: links are per thread.
Everything is idempotent: a second run with nothing new changes nothing.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cases.detect import case_from_keyword, find_case_refs
from mailhygiene.policy import Policy
from mailhygiene.store import case_queries as cq
from mailhygiene.store import thread_queries as tq
from mailhygiene.store.session import Session, Store
from mailhygiene.threads import (
    DEFAULT_SUBJECT_WINDOW,
    ThreadInput,
    ThreadRegistry,
    ThreadUpdate,
    subject_key,
    thread_index_conversation,
)

UNTRIAGED_PREFIX = "UNTRIAGED-"

LARGE_THREAD = 1000
"""A thread linked with more messages than this is reported: subject threading can join
unrelated mail that shares a recurring subject, and a link keeps all of it."""


class LinkHow(StrEnum):
    """How a thread came to be linked to a case (``case_threads.how``)."""

    MANUAL = "manual"
    PATTERN = "pattern"
    KEYWORD = "keyword"
    THREAD = "thread"
    MERGE = "merge"


class ReviewKind(StrEnum):
    KEYWORD_REMOVED = "keyword_removed"
    KEYWORD_ON_UNLINKED = "keyword_on_unlinked_thread"
    PATTERN_ON_UNLINKED = "case_number_on_unlinked_thread"
    MALFORMED_KEYWORD = "malformed_keyword"
    UNKNOWN_CASE = "unknown_case"
    CLOSED_CASE_MAIL = "new_mail_in_closed_case"
    UNTRIAGED = "untriaged"
    LARGE_THREAD = "large_thread"


@dataclass(frozen=True)
class ReviewItem:
    """Something a person should look at; the mail stays protected meanwhile."""

    kind: ReviewKind
    thread_id: str
    case_ref: str | None
    message_rows: tuple[int, ...]
    detail: str


@dataclass
class LinkResult:
    """What one ``link_new_mail`` run did."""

    account: str
    threaded: int = 0
    merged_threads: int = 0
    linked: int = 0
    by_how: dict[str, int] = field(default_factory=dict)
    created_cases: list[str] = field(default_factory=list)
    review: list[ReviewItem] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per step (load new, load known, thread, write ids, case numbers, …)."""


def link_new_mail(
    store: Store, policy: Policy, account: str, *, now: datetime, actor: str
) -> LinkResult:
    """Thread the account's new mail and link threads to cases; see the module docstring."""
    started = time.monotonic()
    result = LinkResult(account=account)
    with store.transaction() as session:
        linker = _Linker(session, policy, account, now, actor, result)
        linker.run()
        commit = time.perf_counter()
    result.phases["commit"] = round(time.perf_counter() - commit, 4)
    settle = time.perf_counter()
    if store.settle_after(result.threaded):  # a first sync's threading rewrites every row
        result.phases["settle"] = round(time.perf_counter() - settle, 4)
    result.seconds = time.monotonic() - started
    return result


def thread_account(
    session: Session, account: str, *, phases: dict[str, float] | None = None
) -> tuple[list[ThreadInput], ThreadUpdate]:
    """Give the account's unthreaded messages a thread id (and apply merges to messages).

    Case links of merged threads are *not* moved here; :func:`link_new_mail` does that
    and audits it. Call inside a transaction that holds ``lock_threading`` and will also
    move the links.
    """
    clock = _Clock(phases if phases is not None else {})
    new_rows = tq.unthreaded(session, account)
    clock.lap("load new")
    if not new_rows:
        return [], ThreadUpdate({}, ())
    known = _relevant_threaded(session, new_rows, DEFAULT_SUBJECT_WINDOW)
    clock.lap("load known")
    registry = ThreadRegistry.from_assigned(known, subject_window=DEFAULT_SUBJECT_WINDOW)
    update = registry.add(new_rows)
    clock.lap("thread")
    tq.set_thread_ids(session, update.assigned)
    tq.rename_threads(session, update.merges)
    clock.lap("write ids")
    return new_rows, update


class _Clock:
    """Adds the seconds between laps to ``phases`` (reported in ``LinkResult.phases``)."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self.last, 4)
        self.last = now

    def skip(self) -> None:
        self.last = time.perf_counter()


class _Linker:
    def __init__(
        self,
        session: Session,
        policy: Policy,
        account: str,
        now: datetime,
        actor: str,
        result: LinkResult,
    ) -> None:
        self.session, self.policy, self.account = session, policy, account
        self.now, self.actor, self.result = now, actor, result
        self.pattern = re.compile(policy.case_pattern)
        self.quick = re.compile(policy.case_pattern, re.IGNORECASE)
        self.keyword = policy.case_keyword
        self.prefix = policy.case_keyword + "_"
        self.newly_linked: set[str] = set()
        self.events: list[tuple[AuditTag, str, dict[str, object]]] = []
        self.cases: dict[str, cq.CaseRef | None] = {}

    def run(self) -> None:
        phases = self.result.phases
        clock = _Clock(phases)
        tq.lock_threading(self.session)
        # Before threading: new mail has no thread yet and threads this run links are not
        # linked yet, so what this finds was linked — and mirrored — in an earlier run.
        missing = self._missing_keywords()
        clock.lap("review before")
        new_rows, update = thread_account(self.session, self.account, phases=phases)
        clock.skip()
        self.result.threaded = len(update.assigned)
        self.result.merged_threads = len(update.merges)
        if update.merges:
            self._repoint(update.merges)
        if new_rows:
            self._link_by_pattern(new_rows, update.assigned)
            self._review_closed_case_mail(update.assigned)
        clock.lap("case numbers")
        self._link_by_keyword()
        self._review_missing_keywords(missing, dict(update.merges))
        self._review_large_threads()
        clock.lap("keywords")
        # Audit last: appending takes the chain's writer lock until this transaction ends.
        for tag, subject, data in self.events:
            audit.append(
                self.session, actor=self.actor, tag=tag, subject=subject, data=data, at=self.now
            )
        clock.lap("audit")

    # -- merges ------------------------------------------------------------------------
    def _repoint(self, merges: Sequence[tuple[str, str]]) -> None:
        moved = cq.repoint_links(self.session, merges, note_suffix=self.now.isoformat())
        for ref, old, new, active in moved:
            if active:
                self.events.append(
                    (
                        AuditTag.CASE_LINK,
                        ref,
                        {"thread": new, "how": LinkHow.MERGE.value, "merged_from": old},
                    )
                )

    # -- case numbers ------------------------------------------------------------------
    def _link_by_pattern(self, rows: Sequence[ThreadInput], assigned: dict[int, str]) -> None:
        wanted: dict[tuple[str, str], list[int]] = {}
        quick = self.quick.search
        for row in rows:
            if not row.subject or quick(row.subject) is None:
                continue
            for ref in find_case_refs(row.subject, self.pattern):
                wanted.setdefault((assigned[row.key], ref), []).append(row.key)
        if not wanted:
            return
        threads = {thread for thread, _ref in wanted}
        active = cq.active_links(self.session, threads)
        unlinked = cq.unlinked_pairs(self.session, threads)
        for (thread, ref), message_rows in sorted(wanted.items()):
            case = self._case(
                ref, create_how=LinkHow.PATTERN if self.policy.case_auto_create else None
            )
            if case is None:
                # Not a case, and the policy does not create cases from numbers: say so.
                self._review(
                    ReviewKind.UNKNOWN_CASE,
                    thread,
                    ref,
                    message_rows,
                    f"new mail names {ref}, which is not a case (auto_create is off); open it "
                    f"with 'mailhygiene case open {ref}' to keep the conversation",
                )
                continue
            if any(link.case_id == case.id for link in active.get(thread, ())):
                continue
            if (case.id, thread) in unlinked:
                self._review(
                    ReviewKind.PATTERN_ON_UNLINKED,
                    thread,
                    ref,
                    message_rows,
                    f"new mail names {ref} in a thread a person unlinked from it; "
                    f"link it again with 'mailhygiene tag' if it belongs to the case",
                )
                continue
            self._link(
                case,
                thread,
                LinkHow.PATTERN,
                f"case number in the subject of {len(message_rows)} new message(s)",
            )
            active.setdefault(thread, []).append(
                cq.LinkRow(0, case.id, case.ref, case.status, thread, LinkHow.PATTERN.value)
            )

    # -- keywords ----------------------------------------------------------------------
    def _link_by_keyword(self) -> None:
        flagged = cq.flagged_messages(self.session, self.account, self.keyword)
        generic: dict[str, list[int]] = {}
        named: dict[tuple[str, str], list[int]] = {}
        for message in flagged:
            if message.thread_id is None:
                continue
            for flag in message.flags:
                folded = flag.casefold()
                if folded == self.keyword.casefold():
                    generic.setdefault(message.thread_id, []).append(message.row_id)
                elif folded.startswith(self.prefix.casefold()):
                    ref = case_from_keyword(flag, self.prefix, pattern=self.pattern)
                    if ref is None:
                        self._review(
                            ReviewKind.MALFORMED_KEYWORD,
                            message.thread_id,
                            None,
                            (message.row_id,),
                            f"keyword {flag!r} does not name a case matching "
                            f"/{self.policy.case_pattern}/; treated as {self.keyword}",
                        )
                        generic.setdefault(message.thread_id, []).append(message.row_id)
                    else:
                        named.setdefault((message.thread_id, ref), []).append(message.row_id)
        threads = set(generic) | {thread for thread, _ref in named}
        if not threads:
            return
        active = cq.active_links(self.session, threads)
        unlinked = cq.unlinked_pairs(self.session, threads)

        for (thread, ref), named_rows in sorted(named.items()):
            rows = tuple(named_rows)
            case = self._case(
                ref, create_how=LinkHow.KEYWORD if self.policy.case_auto_create else None
            )
            if case is None:
                self._review(
                    ReviewKind.UNKNOWN_CASE,
                    thread,
                    ref,
                    tuple(rows),
                    f"a mail client marked it for case {ref}, which does not exist; open it "
                    f"with 'mailhygiene case open {ref}' — meanwhile treated as {self.keyword}",
                )
                generic.setdefault(thread, []).extend(rows)
                continue
            if any(link.case_id == case.id for link in active.get(thread, ())):
                continue
            if (case.id, thread) in unlinked:
                self._review(
                    ReviewKind.KEYWORD_ON_UNLINKED,
                    thread,
                    ref,
                    tuple(rows),
                    f"marked for {ref} in a mail client, but a person unlinked this thread "
                    f"from {ref}; tag it again or remove the keyword",
                )
                continue
            self._link(
                case, thread, LinkHow.KEYWORD, f"keyword {self.prefix}{ref} set in a mail client"
            )
            active.setdefault(thread, []).append(
                cq.LinkRow(0, case.id, case.ref, case.status, thread, LinkHow.KEYWORD.value)
            )

        pending = sorted(thread for thread in generic if not active.get(thread))
        if not pending:
            return
        subjects = cq.thread_subjects(self.session, pending)
        for thread in pending:
            rows = tuple(sorted(set(generic[thread])))
            gone = sorted(
                ref for case_id, t in unlinked if t == thread for ref in [self._ref_of(case_id)]
            )
            if gone:
                self._review(
                    ReviewKind.KEYWORD_ON_UNLINKED,
                    thread,
                    gone[0],
                    rows,
                    f"{self.keyword} is set in a mail client, but a person unlinked this "
                    f"thread from {', '.join(gone)}; tag it again or remove the keyword",
                )
                continue
            refs: dict[str, None] = {}
            for subject in subjects.get(thread, ()):
                refs.update(dict.fromkeys(find_case_refs(subject, self.pattern)))
            linked_any = False
            for ref in refs:
                case = self._case(
                    ref, create_how=LinkHow.KEYWORD if self.policy.case_auto_create else None
                )
                if case is not None:
                    self._link(
                        case,
                        thread,
                        LinkHow.KEYWORD,
                        f"{self.keyword} set in a mail client; case number from the "
                        "thread's subjects",
                    )
                    linked_any = True
            if linked_any:
                continue
            case = self._untriaged(thread)
            listed = ", ".join(refs)
            why = f"names {listed}, which is not a case" if refs else "has no case number"
            self._link(
                case,
                thread,
                LinkHow.KEYWORD,
                f"{self.keyword} set in a mail client; the thread {why}",
            )
            target = next(iter(refs), "REK-…")
            self._review(
                ReviewKind.UNTRIAGED,
                thread,
                case.ref,
                rows,
                f"{self.keyword} set in a mail client; the thread {why}: name the case with "
                f"'mailhygiene case rename {case.ref} {target}'",
            )

    # -- review --------------------------------------------------------------------------
    def _missing_keywords(self) -> dict[str, list[int]]:
        """Messages of threads linked to an open case that lack the keyword, by thread."""
        missing: dict[str, list[int]] = {}
        for message, _keyword in cq.open_case_keywords_lacking(
            self.session, self.account, self.prefix
        ):
            rows = missing.setdefault(message.thread_id, [])
            if message.row_id not in rows:
                rows.append(message.row_id)
        return missing

    def _review_missing_keywords(
        self, before: dict[str, list[int]], renamed: dict[str, str]
    ) -> None:
        """Linked messages (open cases) without the keyword that were linked before this run.

        After mirroring every such message carries it, so a missing one was removed in a
        mail client — or no mirror has run since it was linked. Never an unlink.
        """
        missing: dict[str, list[int]] = {}
        for thread, rows in before.items():
            missing.setdefault(renamed.get(thread, thread), []).extend(rows)
        if not missing:
            return
        links = cq.active_links(self.session, missing)
        for thread, rows in sorted(missing.items()):
            refs = sorted({link.ref for link in links.get(thread, ()) if link.status == "open"})
            self._review(
                ReviewKind.KEYWORD_REMOVED,
                thread,
                refs[0] if refs else None,
                tuple(rows),
                f"{len(rows)} message(s) of a thread linked to {', '.join(refs)} lack "
                f"its keyword {self.prefix}… on the server (removed in a mail client, or not "
                "mirrored yet); still protected — unlink with 'mailhygiene untag' if intended",
            )

    def _review_large_threads(self) -> None:
        if not self.newly_linked:
            return
        sizes = cq.thread_sizes(self.session, self.newly_linked)
        links = cq.active_links(self.session, [t for t, n in sizes.items() if n > LARGE_THREAD])
        for thread, link_rows in sorted(links.items()):
            refs = sorted({link.ref for link in link_rows})
            self._review(
                ReviewKind.LARGE_THREAD,
                thread,
                refs[0],
                (),
                f"linked to {', '.join(refs)} with {sizes[thread]:,} messages, all kept while "
                "the case is open; check 'mailhygiene case show' — mail joined only by a "
                "recurring subject may not belong to the case",
            )

    def _review_closed_case_mail(self, assigned: dict[int, str]) -> None:
        by_thread: dict[str, list[int]] = {}
        for row_id, thread in assigned.items():
            by_thread.setdefault(thread, []).append(row_id)
        links = cq.active_links(self.session, by_thread)
        for thread, link_rows in sorted(links.items()):
            if link_rows and all(link.status != "open" for link in link_rows):
                refs = sorted({link.ref for link in link_rows})
                self._review(
                    ReviewKind.CLOSED_CASE_MAIL,
                    thread,
                    refs[0],
                    tuple(sorted(by_thread[thread])),
                    f"new mail in a thread of closed case(s) {', '.join(refs)}; reopen with "
                    f"'mailhygiene case reopen {refs[0]}' if it needs handling",
                )

    # -- helpers -------------------------------------------------------------------------
    def _case(self, ref: str, *, create_how: LinkHow | None) -> cq.CaseRef | None:
        if ref in self.cases and self.cases[ref] is not None:
            return self.cases[ref]
        case = cq.find_case(self.session, ref)
        if case is None and create_how is not None:
            case = cq.insert_case(
                self.session,
                ref=ref,
                title="",
                created_how=create_how.value,
                actor=self.actor,
                now=self.now,
            )
            self.result.created_cases.append(ref)
            self.events.append((AuditTag.CASE_OPEN, ref, {"created_how": create_how.value}))
        self.cases[ref] = case
        return case

    def _ref_of(self, case_id: int) -> str:
        case = cq.get_case_by_id(self.session, case_id)
        return case.ref if case is not None else f"#{case_id}"

    def _untriaged(self, thread: str) -> cq.CaseRef:
        ref = next_untriaged_ref(self.session, self.now, self.policy)
        case = cq.insert_case(
            self.session, ref=ref, title="", created_how="untriaged", actor=self.actor, now=self.now
        )
        self.result.created_cases.append(ref)
        self.events.append(
            (AuditTag.CASE_OPEN, ref, {"created_how": "untriaged", "thread": thread})
        )
        self.cases[ref] = case
        return case

    def _link(self, case: cq.CaseRef, thread: str, how: LinkHow, note: str) -> None:
        cq.insert_link(
            self.session,
            case_id=case.id,
            thread_id=thread,
            how=how.value,
            actor=self.actor,
            now=self.now,
            note=note,
        )
        self.newly_linked.add(thread)
        self.result.linked += 1
        self.result.by_how[how.value] = self.result.by_how.get(how.value, 0) + 1
        self.events.append((AuditTag.CASE_LINK, case.ref, {"thread": thread, "how": how.value}))

    def _review(
        self, kind: ReviewKind, thread: str, ref: str | None, rows: Iterable[int], detail: str
    ) -> None:
        self.result.review.append(ReviewItem(kind, thread, ref, tuple(rows), detail))


def next_untriaged_ref(session: Session, now: datetime, policy: Policy) -> str:
    """``UNTRIAGED-YYYYMMDD-N``: the next free number for today (policy time zone)."""
    prefix = f"{UNTRIAGED_PREFIX}{now.astimezone(policy.zone):%Y%m%d}-"
    numbers = [
        int(ref[len(prefix) :])
        for ref in cq.refs_starting(session, prefix)
        if ref[len(prefix) :].isdigit()
    ]
    return f"{prefix}{max(numbers, default=0) + 1}"


def is_untriaged_ref(ref: str) -> bool:
    return ref.upper().startswith(UNTRIAGED_PREFIX)


# -- threading input ---------------------------------------------------------------------


def _relevant_threaded(
    session: Session, new_rows: Sequence[ThreadInput], window: timedelta
) -> list[tuple[ThreadInput, str]]:
    """Threaded messages that can affect the new ones' threads (see the module docstring)."""
    if not tq.any_threaded(session):
        return []
    tokens: set[str] = set()
    prefixes: set[str] = set()
    subjects: set[str] = set()
    dates: list[datetime] = []
    for row in new_rows:
        if row.message_id:
            tokens.add(row.message_id)
        if row.in_reply_to:
            tokens.add(row.in_reply_to)
        tokens.update(row.references)
        conversation = thread_index_conversation(row.thread_index)
        if conversation is not None:
            prefixes.add(_conversation_prefix(conversation))
        if row.date is not None and row.subject:
            subject = subject_key(row.subject)
            if subject is not None:
                subjects.add(subject)
                dates.append(row.date)

    relevant: set[int] = set()
    # The hot loop of an incremental run (every threaded message once): plain tuples,
    # set lookups, and the References split only when the cheap tests fail.
    for row_id, message_id, in_reply_to, references, thread_index in tq.threaded_identities(
        session
    ):
        if (
            message_id in tokens
            or in_reply_to in tokens
            or (references and not tokens.isdisjoint(references.split()))
            or (
                prefixes
                and thread_index
                and "".join(thread_index.split())[:_PREFIX_CHARS] in prefixes
            )
        ):
            relevant.add(row_id)
    if subjects:
        reach = 2 * window
        for row_id, subject in tq.threaded_in_window(
            session, min(dates) - reach, max(dates) + reach
        ):
            if row_id not in relevant and subject_key(subject) in subjects:
                relevant.add(row_id)
    if not relevant:
        return []
    return tq.threaded_by_id(session, relevant)


# 22 bytes are 176 bits; the first 29 base64 characters (174 bits) depend on them only.
_PREFIX_CHARS = 29


def _conversation_prefix(conversation_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(conversation_hex)).decode("ascii")[:_PREFIX_CHARS]


__all__ = [
    "UNTRIAGED_PREFIX",
    "LinkHow",
    "LinkResult",
    "ReviewItem",
    "ReviewKind",
    "is_untriaged_ref",
    "link_new_mail",
    "next_untriaged_ref",
    "thread_account",
]
