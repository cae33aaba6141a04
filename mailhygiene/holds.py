"""Legal holds: every message matching a hold's query is kept, present and future.

A hold is stored as its query text and evaluated whenever a verdict is needed (plan,
execution re-verification, quarantine expunge), so mail that arrives after the hold
was placed is held too. Releasing a hold deletes nothing: released mail re-enters
normal retention and only a later, approved plan can remove it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.errors import InputError, NotFoundError
from mailhygiene.query import parse_query
from mailhygiene.store import hold_queries, search_queries
from mailhygiene.store.session import Session, Store


@dataclass(frozen=True)
class HoldView:
    name: str
    query: str
    reason: str
    placed_at: datetime
    placed_by: str
    released_at: datetime | None
    released_by: str | None


def place_hold(
    store: Store, *, name: str, query: str, reason: str, actor: str, now: datetime
) -> HoldView:
    if not name.strip() or any(ch.isspace() for ch in name):
        raise InputError(f"hold name {name!r} must be one word, e.g. tvist-2026")
    if not reason.strip():
        raise InputError("a hold needs a --reason (it is shown to whoever asks why mail is kept)")
    parsed = parse_query(query)
    with store.transaction() as session:
        if hold_queries.get_hold(session, name) is not None:
            raise InputError(f"a hold named {name!r} already exists; choose another name")
        hold = hold_queries.add_hold(
            session, name=name, query=parsed.describe(), reason=reason, actor=actor, now=now
        )
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.HOLD_PLACE,
            subject=name,
            data={"query": hold.query, "reason": reason},
            at=now,
        )
        return _view(hold)


def release_hold(store: Store, *, name: str, actor: str, now: datetime) -> HoldView:
    with store.transaction() as session:
        hold = hold_queries.get_hold(session, name)
        if hold is None or hold.released_at is not None:
            raise NotFoundError(
                f"no active hold named {name!r}; 'mailhygiene hold list' shows them"
            )
        hold.released_at, hold.released_by = now, actor
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.HOLD_RELEASE,
            subject=name,
            data={"query": hold.query},
            at=now,
        )
        return _view(hold)


def list_holds(store: Store, *, include_released: bool = False) -> list[HoldView]:
    with store.transaction() as session:
        return [_view(h) for h in hold_queries.list_holds(session, include_released)]


def _view(hold: hold_queries.Hold) -> HoldView:
    return HoldView(
        hold.name,
        hold.query,
        hold.reason,
        hold.placed_at,
        hold.placed_by,
        hold.released_at,
        hold.released_by,
    )


def hold_lookup(
    session: Session, *, account: str, zone: ZoneInfo
) -> Callable[[int], tuple[str, ...]]:
    """A function from message row id to the names of the active holds that cover it."""
    held = held_rows(session, account=account, zone=zone)
    if not held:
        return _no_holds
    return lambda row: held.get(row, ())


def held_rows(session: Session, *, account: str, zone: ZoneInfo) -> dict[int, tuple[str, ...]]:
    """Every message row of ``account`` an active hold covers, with the holds' names."""
    held: dict[int, list[str]] = {}
    for hold in hold_queries.list_holds(session, include_released=False):
        for row in search_queries.matching_rows(
            session, parse_query(hold.query), zone=zone, account=account
        ):
            held.setdefault(row, []).append(hold.name)
    return {row: tuple(sorted(names)) for row, names in held.items()}


def _no_holds(_row: int) -> tuple[str, ...]:
    return ()
