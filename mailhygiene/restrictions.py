"""Restriction of processing: keep a person's mail, but out of everyday use.

Where erasure is barred — bookkeeping law keeps an invoice, a legal hold keeps mail for
a claim (GDPR art. 17(3)(b) and (e)) — or while a person contests the accuracy or
lawfulness of what is kept (art. 18(1)), the mail is *restricted*: it stays stored,
retention still applies to it (when the bookkeeping period ends it is purged like any
other mail), but ordinary staff no longer find it. Concretely, while a restriction is in
force every message with the person's address in From, To, Cc or Reply-To — present
and future, in every folder and account, matched like a data-subject search — is left
out of ``search`` and ``explain`` for everyone without the ``restricted_read``
permission (only admins hold it). Restricting and lifting are admin actions, audited
with a SHA-256 of the address (never the address), and ``subject restrictions`` reports
what is restricted, why, since when and how many messages it covers.

The person's own right of access is not restricted: ``subject export`` still includes
the mail (art. 15), and an erasure still plans whatever is no longer barred.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.errors import InputError, NotFoundError
from mailhygiene.store import audit_queries, restriction_queries
from mailhygiene.store.models import Restriction
from mailhygiene.store.session import Store
from mailhygiene.subjects import parse_person

_MAX_TEXT = 2000


@dataclass(frozen=True)
class RestrictionView:
    ref: str
    email: str
    plus_addressing: bool
    basis: str
    request_ref: str
    placed_at: datetime
    placed_by: str
    lifted_at: datetime | None
    lifted_by: str | None
    messages: int


def restrict(
    store: Store,
    email: str,
    *,
    basis: str,
    request_ref: str,
    actor: str,
    now: datetime,
    plus_addressing: bool = False,
) -> RestrictionView:
    """Restrict the person's mail from now on; refuses a second restriction in force."""
    person = parse_person(email, plus_addressing=plus_addressing)
    basis = _text(basis, "--basis", "the legal ground, e.g. 'bokföringslagen 7 kap. 2 §'")
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        current = restriction_queries.active_for(session, person.address)
        if current is not None:
            raise InputError(
                f"{person.address} is already restricted ({current.ref}, since "
                f"{current.placed_at:%Y-%m-%d}); lift it first to change it"
            )
        restriction = restriction_queries.add(
            session,
            ref=f"RS-{now:%Y%m%d}-{secrets.token_hex(3).upper()}",
            email=person.address,
            plus_addressing=plus_addressing,
            basis=basis,
            request_ref=request_ref.strip()[:200],
            actor=actor,
            now=now,
        )
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.SUBJECT_RESTRICT,
            subject=restriction.ref,
            data={
                "address_sha256": person.digest,
                "basis": basis,
                "request_ref": restriction.request_ref,
                "plus_addressing": plus_addressing,
            },
            at=now,
        )
        return _view(restriction, restriction_queries.covered_count(session, restriction))


def lift(store: Store, ref: str, *, reason: str, actor: str, now: datetime) -> RestrictionView:
    """End a restriction: the person's mail shows in search again."""
    reason = _text(reason, "--reason", "why the restriction ends")
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        restriction = restriction_queries.get(session, ref.strip().upper())
        if restriction is None:
            raise NotFoundError(
                f"no restriction {ref}; 'mailhygiene subject restrictions' lists them"
            )
        if restriction.lifted_at is not None:
            raise InputError(f"restriction {restriction.ref} was already lifted")
        restriction.lifted_at, restriction.lifted_by = now, actor
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.SUBJECT_UNRESTRICT,
            subject=restriction.ref,
            data={"reason": reason},
            at=now,
        )
        return _view(restriction, restriction_queries.covered_count(session, restriction))


def list_restrictions(store: Store, *, include_lifted: bool = False) -> list[RestrictionView]:
    """Restrictions (in force, or all), each with how many indexed messages it covers."""
    with store.transaction() as session:
        return [
            _view(r, restriction_queries.covered_count(session, r))
            for r in restriction_queries.listing(session, include_lifted=include_lifted)
        ]


def _text(value: str, option: str, expected: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise InputError(f"{option} is required: {expected}")
    if len(text) > _MAX_TEXT:
        raise InputError(f"{option} is longer than {_MAX_TEXT} characters")
    return text


def _view(restriction: Restriction, messages: int) -> RestrictionView:
    return RestrictionView(
        ref=restriction.ref,
        email=restriction.email,
        plus_addressing=restriction.plus_addressing,
        basis=restriction.basis,
        request_ref=restriction.request_ref,
        placed_at=restriction.placed_at,
        placed_by=restriction.placed_by,
        lifted_at=restriction.lifted_at,
        lifted_by=restriction.lifted_by,
        messages=messages,
    )
