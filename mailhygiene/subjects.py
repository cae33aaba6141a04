"""Data-subject requests: find, export or erase one person's mail in every folder and account.

**Finding.** A person is an email address. A message is theirs when the address is in
its From, To, Cc or Reply-To header — compared on the address the index stores
(lower-cased, decoded from display names and encoded words), never on a substring:
``hanna@x`` is not ``anna@x``. With ``plus_addressing`` the address's sub-addresses
count too, both ways: ``anna@x`` finds ``anna+shop@x``, and ``anna+shop@x`` finds
``anna@x`` and ``anna+news@x``. ``also`` terms (a name, a phone or personnummer) are
searched in the indexed subject and sender name, and with ``server_search`` in each
folder's full text on the server (IMAP ``SEARCH TEXT``). Every message found says why
it matched and what keeps it (``policy.decide``: hold, case, rule) or when it goes.

**Export** writes only messages found by the address (never the looser ``also``
terms): nothing the person does not appear in. Each message is fetched whole
(``BODY.PEEK[]``, so nothing is marked read), one at a time, and written as ``.eml``
with its attachments; ``index.json``/``index.csv`` list them and ``summary.html`` says
in plain words what is stored, why and for how long.

**Erasure** plans the removal of every message found by the address except what an
erasure may not touch (``policy.erasure``: a legal hold, an open case or the case
keyword, a closed case within its keep-after-close, a legal obligation rule). The plan
goes through the usual approve (by a second person: every erasure is bulk) → execute
path, which re-checks the same rule; the result carries a letter-ready summary.

**Records.** Every request is a ``SubjectRequest`` with a deadline one month after it
was made (or the deadline already running for the same person and ``request_ref``),
and an audit entry. The audit log is append-only, so it holds the request's reference
and a SHA-256 of the address, never the address or the search terms themselves.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import ZoneInfo

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.errors import FolderError, InputError, NotFoundError
from mailhygiene.governance import admit_for_planning
from mailhygiene.holds import hold_lookup
from mailhygiene.mailbox import FolderStatus
from mailhygiene.policy import (
    Action,
    Duration,
    DurationUnit,
    Policy,
    PurgeAction,
    Reason,
    ReasonKind,
    Verdict,
    decide,
)
from mailhygiene.policy.erasure import ErasureBar, ErasureCheck
from mailhygiene.purge.model import ItemAction, ItemState, PlanKind, PlannedMessage, PlanStatus
from mailhygiene.purge.plan import PlanSummary, planned_message, store_plan
from mailhygiene.store import facts_queries, purge_queries, subject_queries
from mailhygiene.store.facts_queries import IndexedRow
from mailhygiene.store.models import SubjectRequest
from mailhygiene.store.session import Session, Store

REQUEST_DEADLINE = Duration(1, DurationUnit.MONTHS)
"""GDPR art. 12(3): a request is answered within one month of receiving it."""

MAX_TERM = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_RUN = re.compile(r"[\x20-\x7e]{3,}")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class RequestKind(StrEnum):
    FIND = "find"
    EXPORT = "export"
    ERASE = "erase"


class RequestStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    SUPERSEDED = "superseded"


# ============================================================================ the person


@dataclass(frozen=True)
class Person:
    """A data subject, by email address (lower-cased as the index stores addresses)."""

    address: str
    plus_addressing: bool = False

    @property
    def local(self) -> str:
        return self.address.rsplit("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @property
    def base_local(self) -> str:
        """The local part without a ``+tag`` (plus-addressing), or the whole local part."""
        base = self.local.split("+", 1)[0]
        return base if self.plus_addressing and base else self.local

    @property
    def digest(self) -> str:
        """SHA-256 of the address: what the audit log holds instead of the address."""
        return hashlib.sha256(self.address.encode("utf-8")).hexdigest()

    def matches(self, address: str) -> bool:
        if address == self.address:
            return True
        if not self.plus_addressing or "@" not in address:
            return False
        local, domain = address.rsplit("@", 1)
        return domain == self.domain and local.split("+", 1)[0] == self.base_local


def parse_person(email: str, *, plus_addressing: bool = False) -> Person:
    """``anna@example.se``, ``<Anna@Example.SE>`` or ``Anna <anna@example.se>`` → Person."""
    text = email.strip()
    # why: parseaddr quietly takes the first of a list or cuts at a line break; refuse instead
    address = "" if _UNSAFE.search(text) or "," in text else parseaddr(text)[1]
    address = address.strip().strip("<>").lower()
    local, _at, domain = address.rpartition("@")
    if not local or not domain or "@" in local or " " in address:
        raise InputError(
            f"{email!r} is not an email address; give one like anna.svensson@example.se"
        )
    return Person(address=address, plus_addressing=plus_addressing)


def check_terms(also: Iterable[str]) -> tuple[str, ...]:
    """``--also`` terms: non-empty, one line, at most ``MAX_TERM`` characters."""
    terms: list[str] = []
    for term in also:
        text = term.strip()
        if not text or _UNSAFE.search(text) or len(text) > MAX_TERM:
            raise InputError(
                f"--also {term!r}: give a name, phone number or personnummer on one line "
                f"(at most {MAX_TERM} characters)"
            )
        if text not in terms:
            terms.append(text)
    return tuple(terms)


# ============================================================================ servers


class SubjectServer(Protocol):
    """What requests need from a mail server (``ImapMailServer`` implements it)."""

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus: ...

    def search_text(self, text: str) -> list[int]: ...

    def fetch_message(self, uid: int) -> bytes | None: ...


ServerFor = Callable[[str], AbstractContextManager[SubjectServer]]
"""Opens a connected server for an account name (the CLI passes ``app(ctx).server``)."""


# ============================================================================ finding


@dataclass(frozen=True)
class FoundMessage:
    """One message the person appears in, and what the retention policy says about it."""

    id: int
    account: str
    folder: str
    uid: int
    uidvalidity: int
    message_id: str
    received: datetime | None
    sent: datetime | None
    subject: str
    sender: str
    size: int
    matched: tuple[str, ...]
    action: str
    purgeable_from: datetime | None
    reasons: tuple[Reason, ...]
    retention: str
    in_quarantine_until: datetime | None = None


@dataclass
class FindResult:
    request: str
    email: str
    plus_addressing: bool
    also: tuple[str, ...]
    server_search: bool
    evaluated_at: datetime
    due_at: datetime
    messages: list[FoundMessage]
    warnings: list[str] = field(default_factory=list)

    @property
    def by_folder(self) -> dict[str, int]:
        return dict(Counter(f"{m.account}/{m.folder}" for m in self.messages))


@dataclass
class _Match:
    account: str
    how: list[str]


def _address_matches(session: Session, person: Person) -> dict[int, _Match]:
    plus = [(person.base_local, person.domain)] if person.plus_addressing else []
    exact = sorted({person.address, f"{person.base_local}@{person.domain}"})
    found: dict[int, _Match] = {}
    for row in subject_queries.address_candidates(session, addresses=exact, plus_of=plus):
        how = [
            label
            for label, value in (
                ("from", row.from_addr),
                ("to", row.to_addrs),
                ("cc", row.cc_addrs),
                ("reply-to", row.reply_to),
            )
            if any(person.matches(address) for address in value.split())
        ]
        if how:
            found[row.row_id] = _Match(row.account, how)
    return found


def _prefilter(terms: Sequence[str]) -> list[str]:
    """SQL fragments that every match of a term must contain (ASCII, so SQL folds case
    the same everywhere); no fragments (scan everything) when a term has no ASCII run."""
    fragments: list[str] = []
    for term in terms:
        if term.isascii():
            fragments.append(term)
            continue
        runs = sorted(_ASCII_RUN.findall(term), key=len, reverse=True)
        if not runs:
            return []
        fragments.append(runs[0])
    return fragments


def _term_matches(session: Session, terms: Sequence[str], found: dict[int, _Match]) -> None:
    folded = [(term, term.casefold()) for term in terms]
    for row in subject_queries.text_candidates(session, fragments=_prefilter(terms)):
        subject, name = row.subject.casefold(), row.from_name.casefold()
        for term, needle in folded:
            if needle in subject or needle in name:
                found.setdefault(row.row_id, _Match(row.account, [])).how.append(
                    f'subject or sender name contains "{term}"'
                )


def _server_matches(
    store: Store,
    server_for: ServerFor,
    terms: Sequence[str],
    found: dict[int, _Match],
    warnings: list[str],
) -> None:
    with store.transaction() as session:
        folders = subject_queries.indexed_folders(session)
    by_account: dict[str, list[subject_queries.IndexedFolder]] = defaultdict(list)
    for folder in folders:
        by_account[folder.account].append(folder)
    for account, account_folders in by_account.items():
        with server_for(account) as server:
            for folder in account_folders:
                where = f"{account}/{folder.name}"
                if _select(server, folder.name, folder.uidvalidity, where, warnings) is None:
                    continue
                for term in terms:
                    uids = server.search_text(term)
                    with store.transaction() as session:
                        rows = subject_queries.rows_for_uids(session, folder.id, uids)
                    if len(rows) < len(uids):
                        warnings.append(
                            f"{where}: {len(uids) - len(rows)} message(s) containing {term!r} "
                            "are not indexed yet; run 'mailhygiene sync' and search again"
                        )
                    for row_id in rows.values():
                        found.setdefault(row_id, _Match(account, [])).how.append(
                            f'text contains "{term}" (server search)'
                        )


def _select(
    server: SubjectServer,
    folder: str,
    uidvalidity: int | None,
    where: str,
    warnings: list[str],
) -> FolderStatus | None:
    """EXAMINE ``folder``; None (and a warning) when it is gone or its UIDs changed meaning."""
    try:
        status = server.select(folder, readonly=True)
    except FolderError:
        warnings.append(f"{where}: no longer on the server; run 'mailhygiene sync'")
        return None
    if not uidvalidity or status.uidvalidity != uidvalidity:
        # why: a new UIDVALIDITY means the indexed UIDs may name other people's mail now
        warnings.append(
            f"{where}: changed on the server since the last sync (UIDVALIDITY); "
            "run 'mailhygiene sync' and try again"
        )
        return None
    return status


@dataclass(frozen=True)
class _Judged:
    row: IndexedRow
    verdict: Verdict
    matched: tuple[str, ...]


def _judge(
    store: Store, policy: Policy, matches: dict[int, _Match], now: datetime
) -> list[_Judged]:
    by_account: dict[str, list[int]] = defaultdict(list)
    for row_id, match in matches.items():
        by_account[match.account].append(row_id)
    judged: list[_Judged] = []
    for account in sorted(by_account):
        with store.transaction() as session:
            holds_for = hold_lookup(session, account=account, zone=policy.zone)
            for row in facts_queries.iter_indexed(
                session,
                account=account,
                holds_for=holds_for,
                message_rows=sorted(by_account[account]),
            ):
                verdict = decide(row.facts, policy, now)
                judged.append(_Judged(row, verdict, tuple(matches[row.message_row].how)))
    judged.sort(
        key=lambda j: (
            j.row.facts.account,
            j.row.folder,
            j.row.facts.internal_date or datetime.min.replace(tzinfo=UTC),
            j.row.uid,
        )
    )
    return judged


def _quarantine_deadlines(
    store: Store, policy: Policy, judged: Sequence[_Judged]
) -> dict[tuple[str, str], datetime]:
    wanted: dict[str, list[str]] = defaultdict(list)
    for j in judged:
        if j.row.folder == policy.quarantine_folder:
            wanted[j.row.facts.account].append(j.row.message_id)
    deadlines: dict[tuple[str, str], datetime] = {}
    with store.transaction() as session:
        for account, message_ids in wanted.items():
            found = subject_queries.quarantine_deadlines(
                session, account=account, message_ids=message_ids
            )
            deadlines.update({(account, mid): at for mid, at in found.items()})
    return deadlines


def _found(
    judged: _Judged, policy: Policy, quarantine: dict[tuple[str, str], datetime]
) -> FoundMessage:
    row, verdict = judged.row, judged.verdict
    facts = row.facts
    in_quarantine = row.folder == policy.quarantine_folder
    until = quarantine.get((facts.account, row.message_id)) if in_quarantine else None
    return FoundMessage(
        id=row.message_row,
        account=facts.account,
        folder=row.folder,
        uid=row.uid,
        uidvalidity=row.uidvalidity,
        message_id=row.message_id,
        received=facts.internal_date,
        sent=facts.date_header,
        subject=facts.subject,
        sender=facts.from_addr,
        size=facts.size,
        matched=judged.matched,
        action=verdict.action.value,
        purgeable_from=verdict.keep_until,
        reasons=verdict.reasons,
        retention=retention_text(verdict, policy, in_quarantine=in_quarantine, until=until),
        in_quarantine_until=until,
    )


def find_messages(
    store: Store,
    policy: Policy,
    person: Person,
    *,
    now: datetime,
    also: Sequence[str] = (),
    server_for: ServerFor | None = None,
) -> tuple[list[FoundMessage], list[str]]:
    """Every indexed message the person appears in (and, with ``also``, mentions them),
    judged at ``now``; plus warnings about what could not be searched. Records nothing."""
    warnings: list[str] = []
    with store.transaction() as session:
        matches = _address_matches(session, person)
        if also:
            _term_matches(session, also, matches)
    if also and server_for is not None:
        _server_matches(store, server_for, also, matches, warnings)
    judged = _judge(store, policy, matches, now)
    quarantine = _quarantine_deadlines(store, policy, judged)
    return [_found(j, policy, quarantine) for j in judged], warnings


def find(
    store: Store,
    policy: Policy,
    email: str,
    *,
    actor: str,
    now: datetime,
    also: Sequence[str] = (),
    plus_addressing: bool = False,
    server_for: ServerFor | None = None,
    request_ref: str = "",
) -> FindResult:
    """Find the person's mail and record the lookup as a (closed) ``find`` request."""
    person = parse_person(email, plus_addressing=plus_addressing)
    terms = check_terms(also)
    messages, warnings = find_messages(
        store, policy, person, now=now, also=terms, server_for=server_for
    )
    with store.transaction() as session:
        request = _record(
            session,
            policy,
            person,
            RequestKind.FIND,
            actor=actor,
            now=now,
            request_ref=request_ref,
            also=terms,
            found=len(messages),
            status=RequestStatus.DONE,
            data={"server_search": server_for is not None and bool(terms)},
        )
    return FindResult(
        request=request.ref,
        email=person.address,
        plus_addressing=plus_addressing,
        also=terms,
        server_search=server_for is not None and bool(terms),
        evaluated_at=now,
        due_at=request.due_at,
        messages=messages,
        warnings=warnings,
    )


# ============================================================================ explaining


def _local(at: datetime | None, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d") if at is not None else ""


def retention_text(
    verdict: Verdict, policy: Policy, *, in_quarantine: bool = False, until: datetime | None = None
) -> str:
    """Why a message is kept and for how long, in words a person can be sent."""
    if in_quarantine:
        if until is not None:
            day = _local(until, policy.zone)
            return f"already removed; in quarantine until deleted for good on {day}"
        return "already removed; in quarantine awaiting final deletion"
    deciding = verdict.reasons[0]
    if verdict.action is Action.PURGE:
        return "past its retention period: deleted at the next scheduled clean-up"
    after_close = policy.case_keep_after_close.describe()
    if deciding.kind is ReasonKind.HOLD:
        return f"{reason_label(deciding, policy)}: kept until the hold is released"
    if deciding.kind in (ReasonKind.CASE_OPEN, ReasonKind.CASE_KEYWORD):
        return (
            f"{reason_label(deciding, policy)}: kept while it is handled and {after_close} "
            "after it is closed"
        )
    return f"{reason_label(deciding, policy)}: {deciding.detail}"


def _until_words(until: datetime, zone: ZoneInfo) -> str:
    """``through 2032-12-31`` for a period ending at local midnight, else ``until <date>``."""
    local = until.astimezone(zone)
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        return f"through {(local - timedelta(days=1)).date().isoformat()}"
    return f"until {local.date().isoformat()}"


def reason_label(reason: Reason, policy: Policy) -> str:
    """A reason's name for a person: cases by reference, rules by description and source;
    legal holds without their internal name."""
    kind = reason.kind
    if kind is ReasonKind.HOLD:
        return "legal hold (preserved for a legal claim or proceedings)"
    if kind is ReasonKind.CASE_OPEN:
        return f"complaint case {reason.name}, still being handled"
    if kind is ReasonKind.CASE_CLOSED:
        return f"complaint case {reason.name} (closed)"
    if kind is ReasonKind.CASE_KEYWORD:
        return "marked by our staff as part of a complaint"
    if kind is ReasonKind.RULE:
        rule = next((r for r in policy.rules if r.name == reason.name), None)
        if rule is None:
            return f"rule {reason.name}"
        label = rule.description or rule.name
        return f"{label} ({rule.source})" if rule.source else label
    if kind is ReasonKind.NO_DATE:
        return "date unknown"
    return "normal correspondence"


# ============================================================================ records


def _record(
    session: Session,
    policy: Policy,
    person: Person,
    kind: RequestKind,
    *,
    actor: str,
    now: datetime,
    request_ref: str,
    status: RequestStatus,
    found: int = 0,
    also: Sequence[str] = (),
    data: dict[str, object] | None = None,
) -> SubjectRequest:
    """Insert a request and audit it (``subject:request``) in the caller's transaction."""
    if _UNSAFE.search(request_ref) or len(request_ref) > 200:
        raise InputError("--request-ref must be one line of at most 200 characters")
    due = REQUEST_DEADLINE.add_to(now.astimezone(policy.zone)).astimezone(UTC)
    running = subject_queries.earliest_due(session, email=person.address, request_ref=request_ref)
    if running is not None:
        # why: the month runs from when the request arrived, not from each step taken on it
        due = min(due, running)
    request = subject_queries.add_request(
        session,
        SubjectRequest(
            ref=f"DSR-{now:%Y%m%d}-{secrets.token_hex(3)}",
            email=person.address,
            also_terms=json.dumps(list(also), ensure_ascii=False),
            kind=kind.value,
            requested_at=now,
            requested_by=actor,
            request_ref=request_ref,
            due_at=due,
            status=status.value,
            found_count=found,
            exported_to=None,
            plan_ref=None,
            closed_at=now if status is not RequestStatus.OPEN else None,
            note="",
        ),
    )
    audit.append(
        session,
        actor=actor,
        tag=AuditTag.SUBJECT_REQUEST,
        subject=request.ref,
        data={
            "kind": kind.value,
            "email_sha256": person.digest,
            "plus_addressing": person.plus_addressing,
            "request_ref": request_ref,
            "also_terms": len(also),
            "found": found,
            "due_at": due,
            **(data or {}),
        },
        at=now,
    )
    return request


@dataclass(frozen=True)
class RequestView:
    ref: str
    kind: str
    email: str
    request_ref: str
    requested_at: datetime
    requested_by: str
    due_at: datetime
    days_left: int
    status: str
    stage: str
    found: int
    exported_to: str | None
    plans: tuple[str, ...]
    closed_at: datetime | None
    note: str


def list_requests(
    store: Store, *, now: datetime, actor: str, zone: ZoneInfo, include_closed: bool = False
) -> list[RequestView]:
    """Requests by due date (open ones unless ``include_closed``); days left are counted in
    calendar days of ``zone``. Erasures whose plans have all been executed are closed first
    (audited as ``subject:erase`` phase ``done``)."""
    with store.transaction() as session:
        _settle_erasures(session, now=now, actor=actor)
    with store.transaction() as session:
        requests = subject_queries.list_requests(session, include_closed=include_closed)
        plans = subject_queries.plan_states(
            session, (ref for r in requests for ref in (r.plan_ref or "").split())
        )
        return [_view(r, plans, now, zone) for r in requests]


def _settle_erasures(session: Session, *, now: datetime, actor: str) -> None:
    for request in subject_queries.list_requests(session):
        refs = (request.plan_ref or "").split()
        if request.kind != RequestKind.ERASE.value or not refs:
            continue
        plans = subject_queries.plan_states(session, refs)
        if len(plans) == len(refs) and all(
            p.status == PlanStatus.DONE.value for p in plans.values()
        ):
            finished = [p.finished_at for p in plans.values() if p.finished_at is not None]
            erased = 0
            kept: Counter[str] = Counter()
            for plan in plans.values():
                erased += purge_queries.count_by_state(session, plan.id).get(
                    ItemState.DONE.value, 0
                )
                kept.update(purge_queries.skipped_reasons(session, plan.id))
            request.status = RequestStatus.DONE.value
            request.closed_at = max(finished) if finished else now
            request.note = f"erased {erased} message(s)" + (
                "; not erased at execution: "
                + ", ".join(f"{count} {reason}" for reason, count in sorted(kept.items()))
                if kept
                else ""
            )
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.SUBJECT_ERASE,
                subject=request.ref,
                data={"phase": "done", "plans": refs, "erased": erased, "kept": dict(kept)},
                at=now,
            )


def _view(
    request: SubjectRequest,
    plans: dict[str, subject_queries.PlanState],
    now: datetime,
    zone: ZoneInfo,
) -> RequestView:
    refs = tuple((request.plan_ref or "").split())
    return RequestView(
        ref=request.ref,
        kind=request.kind,
        email=request.email,
        request_ref=request.request_ref,
        requested_at=request.requested_at,
        requested_by=request.requested_by,
        due_at=request.due_at,
        days_left=(request.due_at.astimezone(zone).date() - now.astimezone(zone).date()).days,
        status=request.status,
        stage=_stage(request, refs, plans, now),
        found=request.found_count,
        exported_to=request.exported_to,
        plans=refs,
        closed_at=request.closed_at,
        note=request.note,
    )


def _stage(
    request: SubjectRequest,
    refs: Sequence[str],
    plans: dict[str, subject_queries.PlanState],
    now: datetime,
) -> str:
    if request.status != RequestStatus.OPEN.value:
        return request.note or request.status
    if not refs:
        return request.note or "recorded; nothing done yet"
    again = (
        f"run 'mailhygiene subject erase {request.email} --request-ref {request.request_ref}' again"
    )
    steps: list[str] = []
    for ref in refs:
        plan = plans.get(ref)
        if plan is None:
            steps.append(f"plan {ref} is missing: {again}")
        elif plan.status == PlanStatus.DONE.value:
            steps.append(f"plan {ref} executed")
        elif plan.status == PlanStatus.REJECTED.value:
            steps.append(f"plan {ref} was rejected: {again}")
        elif plan.status == PlanStatus.EXECUTING.value:
            steps.append(f"plan {ref} is executing: 'mailhygiene purge resume {ref}'")
        elif now >= plan.expires_at:
            steps.append(f"plan {ref} expired unexecuted: {again}")
        elif plan.status == PlanStatus.APPROVED.value:
            steps.append(f"plan {ref} approved: 'mailhygiene purge execute {ref}'")
        else:
            steps.append(f"plan {ref} awaits a second person's 'mailhygiene purge approve {ref}'")
    return "; ".join(steps)


# ============================================================================ export


@dataclass(frozen=True)
class ExportedMessage:
    file: str
    account: str
    folder: str
    received: datetime | None
    sent: datetime | None
    subject: str
    sender: str
    appears_as: tuple[str, ...]
    size: int
    sha256: str
    attachments: tuple[str, ...]
    kept_because: str
    kept_until: datetime | None


@dataclass
class ExportResult:
    request: str
    email: str
    out_dir: Path
    exported_at: datetime
    due_at: datetime
    found: int
    exported: list[ExportedMessage]
    total_bytes: int
    files: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    why_kept: dict[str, int] = field(default_factory=dict)


def _prepare_dir(out_dir: Path) -> Path:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(
            f"{out_dir} already exists and is not an empty directory; "
            "choose a new directory for the export"
        )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)  # why: it holds personal data; mkdir's mode obeys the umask
    (out_dir / "messages").mkdir(mode=0o700)
    return out_dir


def _private(path: Path, mode: str = "w") -> IO[Any]:
    """Open a new file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    if "b" in mode:
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _slug(text: str) -> str:
    return _SLUG.sub("_", text).strip("_")[:60] or "folder"


def _attachment_names(raw: bytes) -> tuple[str, ...]:
    """Attachment file names as mail-parser reads them (decoded RFC 2231/2047 names)."""
    import mailparser  # why: only the export needs it; it is slow to import

    try:
        parsed = mailparser.parse_from_bytes(raw)
        return tuple(str(a.get("filename") or "(unnamed)") for a in parsed.attachments)
    except Exception:  # mail-parser raises many kinds on broken MIME; the .eml is intact
        return ("(attachments could not be listed; see the .eml file)",)


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # why: a subject like "=HYPERLINK(...)" must not run as a formula in a spreadsheet
    return "'" + text if text.startswith(_CSV_FORMULA) else text


_CSV_COLUMNS = (
    "file",
    "account",
    "folder",
    "received",
    "date",
    "subject",
    "from",
    "appears_as",
    "attachments",
    "size",
    "sha256",
    "kept_because",
    "kept_until",
)


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at is not None else None


def export(
    store: Store,
    policy: Policy,
    email: str,
    out_dir: Path,
    *,
    server_for: ServerFor,
    actor: str,
    now: datetime,
    request_ref: str = "",
    plus_addressing: bool = False,
) -> ExportResult:
    """Write the person's mail to ``out_dir`` (new or empty) with an index and a summary.

    Messages are fetched and written one at a time; only their small index entries stay
    in memory. A folder whose UIDVALIDITY changed since the last sync is skipped (its
    UIDs may name other people's mail) and the request stays open until exported again.
    """
    person = parse_person(email, plus_addressing=plus_addressing)
    messages, warnings = find_messages(store, policy, person, now=now)
    out_dir = _prepare_dir(out_dir)
    with store.transaction() as session:
        request = _record(
            session,
            policy,
            person,
            RequestKind.EXPORT,
            actor=actor,
            now=now,
            request_ref=request_ref,
            found=len(messages),
            status=RequestStatus.OPEN,
        )
        request.exported_to = str(out_dir)
        request_id, request_name, due_at = request.id, request.ref, request.due_at
    result = ExportResult(
        request=request_name,
        email=person.address,
        out_dir=out_dir,
        exported_at=now,
        due_at=due_at,
        found=len(messages),
        exported=[],
        total_bytes=0,
        files=[],
        warnings=warnings,
    )
    skipped: Counter[str] = Counter()
    with _private(out_dir / "index.csv") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(_CSV_COLUMNS)
        _export_messages(messages, policy, server_for, out_dir, result, skipped, writer)
    result.skipped = dict(skipped)
    index_digest = _write_index_json(out_dir / "index.json", result, request_ref, policy)
    _write_summary_html(out_dir / "summary.html", result, request_ref, policy)
    result.files = ["summary.html", "index.json", "index.csv", *(m.file for m in result.exported)]
    complete = not skipped
    with store.transaction() as session:
        stored = session.get(SubjectRequest, request_id)
        if stored is None:  # pragma: no cover - inserted above, never deleted
            raise NotFoundError(f"request {request_name} vanished during the export")
        if complete:
            stored.status, stored.closed_at = RequestStatus.DONE.value, now
            stored.note = f"exported {len(result.exported)} message(s)"
        else:
            stored.note = (
                f"incomplete: {sum(skipped.values())} message(s) not exported; "
                "run 'mailhygiene sync' and export again"
            )
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.SUBJECT_EXPORT,
            subject=request_name,
            data={
                "email_sha256": person.digest,
                "request_ref": request_ref,
                "found": len(messages),
                "exported": len(result.exported),
                "bytes": result.total_bytes,
                "skipped": dict(skipped),
                "index_sha256": index_digest,
                "complete": complete,
            },
            at=now,
        )
    return result


def _export_messages(
    messages: Sequence[FoundMessage],
    policy: Policy,
    server_for: ServerFor,
    out_dir: Path,
    result: ExportResult,
    skipped: Counter[str],
    writer: Any,
) -> None:
    by_account: dict[str, dict[str, list[FoundMessage]]] = defaultdict(lambda: defaultdict(list))
    for message in messages:
        by_account[message.account][message.folder].append(message)
    serial = 0
    why_kept: Counter[str] = Counter()
    for account, folders in by_account.items():
        with server_for(account) as server:
            for folder_name, folder_messages in folders.items():
                where = f"{account}/{folder_name}"
                expected = folder_messages[0].uidvalidity
                if _select(server, folder_name, expected, where, result.warnings) is None:
                    skipped["folder changed or gone on the server since the last sync"] += len(
                        folder_messages
                    )
                    continue
                for message in folder_messages:
                    raw = server.fetch_message(message.uid)
                    if raw is None:
                        skipped["gone from the server since the last sync"] += 1
                        continue
                    if len(raw) != message.size:
                        # why: not the message the index describes; never export a stranger's
                        skipped["differs from the indexed message (sync and retry)"] += 1
                        continue
                    serial += 1
                    name = (
                        f"messages/{serial:05d}-{_slug(account)}-{_slug(folder_name)}"
                        f"-{message.uid}.eml"
                    )
                    with _private(out_dir / name, "wb") as eml:
                        eml.write(raw)
                    entry = ExportedMessage(
                        file=name,
                        account=account,
                        folder=folder_name,
                        received=message.received,
                        sent=message.sent,
                        subject=message.subject,
                        sender=message.sender,
                        appears_as=message.matched,
                        size=len(raw),
                        sha256=hashlib.sha256(raw).hexdigest(),
                        attachments=_attachment_names(raw),
                        kept_because=message.retention,
                        kept_until=message.in_quarantine_until or message.purgeable_from,
                    )
                    del raw
                    writer.writerow(
                        [
                            _csv_cell(v)
                            for v in (
                                entry.file,
                                entry.account,
                                entry.folder,
                                _iso(entry.received),
                                _iso(entry.sent),
                                entry.subject,
                                entry.sender,
                                " ".join(entry.appears_as),
                                "; ".join(entry.attachments),
                                entry.size,
                                entry.sha256,
                                entry.kept_because,
                                _iso(entry.kept_until),
                            )
                        ]
                    )
                    result.exported.append(entry)
                    result.total_bytes += entry.size
                    why_kept[_group_explanation(message, policy)] += 1
    result.why_kept = dict(why_kept.most_common())


def _write_index_json(path: Path, result: ExportResult, request_ref: str, policy: Policy) -> str:
    """``index.json``, written entry by entry; returns its SHA-256 (kept in the audit log)."""
    head = {
        "format": "mailhygiene subject export 1",
        "email": result.email,
        "request": result.request,
        "request_ref": request_ref,
        "exported_at": _iso(result.exported_at),
        "time_zone": policy.timezone,
    }
    digest = hashlib.sha256()
    with _private(path, "wb") as handle:

        def put(text: str) -> None:
            data = text.encode("utf-8")
            digest.update(data)
            handle.write(data)

        put(json.dumps(head, ensure_ascii=False, indent=2)[:-2] + ',\n  "messages": [')
        for number, m in enumerate(result.exported):
            entry = {
                "file": m.file,
                "account": m.account,
                "folder": m.folder,
                "received": _iso(m.received),
                "date": _iso(m.sent),
                "subject": m.subject,
                "from": m.sender,
                "appears_as": list(m.appears_as),
                "attachments": list(m.attachments),
                "size": m.size,
                "sha256": m.sha256,
                "kept_because": m.kept_because,
                "kept_until": _iso(m.kept_until),
            }
            put(("," if number else "") + "\n    " + json.dumps(entry, ensure_ascii=False))
        put("\n  ]\n}\n")
    return digest.hexdigest()


def _group_explanation(message: FoundMessage, policy: Policy) -> str:
    """One line per kind of reason, for the summary's "why and for how long"."""
    if message.in_quarantine_until is not None or message.folder == policy.quarantine_folder:
        return "already removed from our mailboxes; waiting in quarantine to be deleted for good"
    if message.action == Action.PURGE.value:
        return "past its retention period; deleted at the next scheduled clean-up"
    reason = message.reasons[0]
    after_close = policy.case_keep_after_close.describe()
    kind = reason.kind
    if kind is ReasonKind.HOLD:
        return (
            "kept because we must preserve it for a legal claim or proceedings (a legal hold), "
            "until that obligation ends"
        )
    if kind is ReasonKind.CASE_OPEN:
        return (
            f"part of complaint case {reason.name}, which is still being handled: kept while "
            f"it is open and {after_close} after it is closed"
        )
    if kind is ReasonKind.CASE_CLOSED:
        return f"part of complaint case {reason.name}, now closed: kept {after_close} after closing"
    if kind is ReasonKind.CASE_KEYWORD:
        return "marked by our staff as part of a complaint: kept while the complaint is handled"
    if kind is ReasonKind.RULE:
        rule = next((r for r in policy.rules if r.name == reason.name), None)
        if rule is not None:
            why = rule.description or rule.name
            source = f" ({rule.source})" if rule.source else ""
            return f"{why}{source}: kept {rule.keep.describe()} {rule.anchor.describe()}"
    if kind is ReasonKind.NO_DATE:
        return "its date is unknown, so it is kept until we review it"
    return (
        f"normal correspondence: kept {policy.default_keep.describe()} from when it was "
        "received, then deleted automatically"
    )


_STYLE = (
    "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem;"
    "text-align:left;vertical-align:top;font-size:.9rem}th{background:#f3f3f3}"
)


def _write_summary_html(
    path: Path,
    result: ExportResult,
    request_ref: str,
    policy: Policy,
) -> None:
    """The letter-ready summary: every value escaped (subjects and names are untrusted)."""
    zone = policy.zone
    e = html.escape
    folders = Counter(m.folder for m in result.exported)
    dates = sorted(m.received for m in result.exported if m.received is not None)
    with _private(path) as out:
        out.write(
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Email stored about {e(result.email)}</title><style>{_STYLE}</style>"
            f"</head><body>\n<h1>Email we store about {e(result.email)}</h1>\n<p>"
        )
        if request_ref:
            out.write(f"Your reference: {e(request_ref)}. ")
        out.write(
            f"Our reference: {e(result.request)}. Compiled on "
            f"{e(_local(result.exported_at, zone))}.</p>\n<h2>What is stored</h2>\n"
        )
        if not result.exported:
            out.write("<p>We store no email in which your address appears.</p>\n")
        else:
            span = (
                f", received between {e(_local(dates[0], zone))} and {e(_local(dates[-1], zone))}"
                if dates
                else ""
            )
            out.write(
                f"<p>{len(result.exported)} email message(s) in which your address appears as "
                f"sender, recipient, copy recipient or reply-to address{span}. Each message is "
                "included in full, with its attachments, as an <code>.eml</code> file in the "
                "folder <code>messages/</code>; <code>index.csv</code> and "
                "<code>index.json</code> list them.</p>\n<table><tr><th>Folder</th>"
                "<th>Messages</th></tr>\n"
            )
            for folder, count in sorted(folders.items()):
                out.write(f"<tr><td>{e(folder)}</td><td>{count}</td></tr>\n")
            out.write("</table>\n<h2>Why we keep them, and for how long</h2>\n<ul>\n")
            for text, count in result.why_kept.items():
                out.write(f"<li>{count} message(s): {e(text)}.</li>\n")
            out.write(
                "</ul>\n<h2>The messages</h2>\n<table><tr><th>Received</th><th>Folder</th>"
                "<th>Subject</th><th>From</th><th>Your address as</th><th>Attachments</th>"
                "<th>Why kept</th><th>May be deleted from</th><th>File</th></tr>\n"
            )
            for m in result.exported:
                until = _local(m.kept_until, zone) or "not foreseeable"
                out.write(
                    f"<tr><td>{e(_local(m.received, zone))}</td><td>{e(m.folder)}</td>"
                    f"<td>{e(m.subject)}</td><td>{e(m.sender)}</td>"
                    f"<td>{e(', '.join(m.appears_as))}</td><td>{e(', '.join(m.attachments))}</td>"
                    f"<td>{e(m.kept_because)}</td><td>{e(until)}</td>"
                    f'<td><a href="{e(m.file)}">{e(m.file.rsplit("/", 1)[-1])}</a></td></tr>\n'
                )
            out.write("</table>\n")
        out.write(
            "<h2>Your rights</h2>\n<p>You may ask us to correct or erase this data, or object "
            "to how we use it. Mail we must keep by law (such as bookkeeping records) or for "
            "an ongoing complaint or legal process is kept only as long as that requires.</p>\n"
            "</body></html>\n"
        )


# ============================================================================ erasure


@dataclass(frozen=True)
class KeptGroup:
    """Messages an erasure must leave, for one reason."""

    kind: str
    name: str
    explanation: str
    messages: int
    until: datetime | None


@dataclass
class ErasureResult:
    request: str
    request_ref: str
    email: str
    evaluated_at: datetime
    due_at: datetime
    found: int
    to_erase: int
    to_erase_bytes: int
    by_folder: dict[str, int]
    plans: list[PlanSummary]
    kept: list[KeptGroup]
    in_quarantine: int
    quarantine_until: datetime | None
    superseded: list[str]
    letter: str


def _kept_explanation(bar: ErasureBar, policy: Policy) -> str:
    reason = bar.reason
    after_close = policy.case_keep_after_close.describe()
    until = _until_words(bar.until, policy.zone) if bar.until is not None else ""
    kind = reason.kind
    if kind is ReasonKind.HOLD:
        return (
            "we are obliged to preserve them for a legal claim or proceedings (a legal hold); "
            "they are kept until that obligation ends and then deleted"
        )
    if kind is ReasonKind.CASE_OPEN:
        return (
            f"they belong to complaint case {reason.name}, which is still being handled; they "
            f"are kept while it is open and {after_close} after it is closed, then deleted"
        )
    if kind is ReasonKind.CASE_KEYWORD:
        return (
            "our staff marked them as part of a complaint that is being handled; they are "
            "kept while it is handled"
        )
    if kind is ReasonKind.CASE_CLOSED:
        return (
            f"they belong to complaint case {reason.name}, closed recently; they are kept "
            f"{after_close} after closing" + (f", {until}" if until else "")
        )
    if kind is ReasonKind.RULE:
        label = reason_label(reason, policy)
        return f"we must keep them by law: {label}" + (f", {until}" if until else "")
    return f"{reason_label(reason, policy)}: {reason.detail}"


def plan_erasure(
    store: Store,
    policy: Policy,
    email: str,
    *,
    request_ref: str,
    actor: str,
    now: datetime,
    plus_addressing: bool = False,
) -> ErasureResult:
    """Plan the erasure of the person's mail (one plan per account), record the request.

    Planned: every message found by the address, outside the quarantine folder, that
    nothing bars from erasure (``policy.erasure.ErasureCheck``). Kept: the rest, grouped
    by reason. Nothing changes on any server until the plans are approved and executed.
    Refused like a purge plan when a locked policy version is in force and ``policy`` is
    not it (``governance.admit_for_planning``).
    """
    if not request_ref.strip():
        raise InputError("an erasure needs --request-ref: the reference of the person's request")
    person = parse_person(email, plus_addressing=plus_addressing)
    # why: the erasure rule reads the obligation rules; a locked policy must not be bypassed
    admit_for_planning(store, policy, actor=actor, now=now)
    with store.transaction() as session:
        matches = _address_matches(session, person)
    judged = _judge(store, policy, matches, now)
    check = ErasureCheck(policy)
    action = ItemAction.MOVE if policy.purge_action is PurgeAction.MOVE else ItemAction.DELETE

    with store.transaction() as session:
        superseded = subject_queries.open_erasures(
            session, email=person.address, request_ref=request_ref
        )
        request = _record(
            session,
            policy,
            person,
            RequestKind.ERASE,
            actor=actor,
            now=now,
            request_ref=request_ref,
            found=len(judged),
            status=RequestStatus.OPEN,
        )
        for older in superseded:
            older.status, older.closed_at = RequestStatus.SUPERSEDED.value, now
            older.note = f"replaced by {request.ref}"
        request_name, due_at = request.ref, request.due_at

    items: dict[str, list[PlannedMessage]] = defaultdict(list)
    kept: dict[tuple[str, str], list[ErasureBar]] = defaultdict(list)
    explanations: dict[tuple[str, str], str] = {}
    quarantined: list[_Judged] = []
    for j in judged:
        row = j.row
        if row.folder == policy.quarantine_folder:
            quarantined.append(j)
            continue
        bar = check.bar(row.facts, now)
        if bar is not None:
            key = (bar.reason.kind.value, bar.reason.name)
            kept[key].append(bar)
            explanations.setdefault(key, _kept_explanation(bar, policy))
            continue
        items[row.facts.account].append(
            planned_message(
                row,
                action,
                reason_kind="erasure",
                reason_name=request_name,
                reason_detail=(
                    f"data-subject erasure request {request_name} (their reference "
                    f"{request_ref}); appears as {', '.join(j.matched)}"
                ),
            )
        )
    kept_counts = {f"{kind}:{name}": len(bars) for (kind, name), bars in sorted(kept.items())}
    summaries: list[PlanSummary] = []
    for account, account_items in sorted(items.items()):
        summaries.append(
            store_plan(
                store,
                policy,
                kind=PlanKind.ERASURE,
                account=account,
                items=account_items,
                now=now,
                actor=actor,
                note=f"erasure for data-subject request {request_name} ({request_ref})",
                summary=_erasure_summary(account, account_items, kept_counts, now, actor),
            )
        )
    groups = [
        KeptGroup(
            kind=kind,
            name=name,
            explanation=explanations[(kind, name)],
            messages=len(bars),
            until=None
            if any(b.until is None for b in bars)
            else max(b.until for b in bars if b.until),
        )
        for (kind, name), bars in sorted(kept.items())
    ]
    quarantine = _quarantine_deadlines(store, policy, quarantined)
    deadlines = [quarantine[k] for k in quarantine]
    planned = [i for group in items.values() for i in group]
    result = ErasureResult(
        request=request_name,
        request_ref=request_ref,
        email=person.address,
        evaluated_at=now,
        due_at=due_at,
        found=len(judged),
        to_erase=len(planned),
        to_erase_bytes=sum(i.size for i in planned),
        by_folder=dict(Counter(i.folder for i in planned)),
        plans=summaries,
        kept=groups,
        in_quarantine=len(quarantined),
        quarantine_until=max(deadlines) if deadlines else None,
        superseded=[r.ref for r in superseded],
        letter="",
    )
    result.letter = erasure_letter(result, policy)
    refs = [s.ref for s in summaries if s.ref]
    with store.transaction() as session:
        stored = subject_queries.get_request(session, request_name)
        if stored is None:  # pragma: no cover - inserted above, never deleted
            raise NotFoundError(f"request {request_name} vanished while planning")
        stored.plan_ref = " ".join(refs) or None
        if not refs:
            stored.status, stored.closed_at = RequestStatus.DONE.value, now
            stored.note = "nothing to erase: everything found is kept (see the letter)"
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.SUBJECT_ERASE,
            subject=request_name,
            data={
                "phase": "planned",
                "email_sha256": person.digest,
                "request_ref": request_ref,
                "found": len(judged),
                "planned": len(planned),
                "plans": refs,
                "kept": kept_counts,
                "in_quarantine": len(quarantined),
                "superseded": result.superseded,
            },
            at=now,
        )
    return result


def _erasure_summary(
    account: str,
    items: Sequence[PlannedMessage],
    kept: dict[str, int],
    now: datetime,
    actor: str,
) -> PlanSummary:
    by_folder: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        by_folder[item.folder]["messages"] += 1
        by_folder[item.folder]["bytes"] += item.size
    reason = f"erasure:{items[0].reason_name}" if items else "erasure"
    return PlanSummary(
        ref=None,
        kind=PlanKind.ERASURE.value,
        account=account,
        status=PlanStatus.PENDING.value,
        created_at=now,
        created_by=actor,
        planned_for=now,
        expires_at=None,
        item_count=len(items),
        total_bytes=sum(i.size for i in items),
        content_hash="",
        policy_hash="",
        by_folder={name: dict(totals) for name, totals in sorted(by_folder.items())},
        by_reason={reason: {"messages": len(items), "bytes": sum(i.size for i in items)}},
        kept=dict(kept),
    )


def erasure_letter(result: ErasureResult, policy: Policy) -> str:
    """Plain text to send the person once the plans have been executed."""
    zone = policy.zone
    lines = [
        f"Your request to erase your personal data (your reference: {result.request_ref})",
        "",
        f"We have searched all our mailboxes for email in which the address {result.email} "
        "appears as sender, recipient, copy recipient or reply-to address.",
        "",
    ]
    if not result.found:
        lines.append("We found no such email.")
    else:
        lines.append(f"We found {result.found} message(s).")
        lines.append("")
        if result.to_erase:
            folders = ", ".join(
                f"{name} {count}" for name, count in sorted(result.by_folder.items())
            )
            if policy.purge_action is PurgeAction.MOVE:
                how = (
                    "They are removed from our mailboxes and deleted for good "
                    f"{policy.quarantine_grace.describe()} later (a safety period in which they "
                    "are not used)."
                )
            else:
                how = "They are deleted for good."
            lines += [f"Erased: {result.to_erase} message(s) ({folders}). {how}", ""]
        if result.kept or result.in_quarantine:
            lines.append("Kept, and why:")
            for group in result.kept:
                lines.append(f"  - {group.messages} message(s): {group.explanation}.")
            if result.in_quarantine:
                when = (
                    f" on {_local(result.quarantine_until, zone)}"
                    if result.quarantine_until
                    else ""
                )
                lines.append(
                    f"  - {result.in_quarantine} message(s) had already been removed and wait "
                    f"in our quarantine; they are deleted for good{when}."
                )
            lines.append("")
    lines.append(f"Our reference: {result.request}.")
    return "\n".join(lines)


__all__ = [
    "REQUEST_DEADLINE",
    "ErasureResult",
    "ExportResult",
    "ExportedMessage",
    "FindResult",
    "FoundMessage",
    "KeptGroup",
    "Person",
    "RequestKind",
    "RequestStatus",
    "RequestView",
    "ServerFor",
    "SubjectServer",
    "check_terms",
    "erasure_letter",
    "export",
    "find",
    "find_messages",
    "list_requests",
    "parse_person",
    "plan_erasure",
    "reason_label",
    "retention_text",
]
