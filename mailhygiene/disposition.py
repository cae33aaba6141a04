"""Proof of disposition: the record of what was deleted for good, for an auditor.

A tombstone is written in the same transaction that records a final deletion (a
direct delete in ``purge.execute``, a quarantine expunge in ``purge.quarantine``):
the Message-ID's sha256, folder, dates, size, the deciding rule, the policy version,
the plan and its approvers, and the time. No content and no addresses.

Tombstones are themselves kept only for ``[policy] tombstone_keep`` (default 10 years);
the scheduled run deletes older ones (``purge_expired_tombstones``).
"""

from __future__ import annotations

import calendar
import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailhygiene.errors import InputError
from mailhygiene.policy import Duration, DurationUnit, Policy
from mailhygiene.store import governance_queries
from mailhygiene.store.session import Session, Store

__all__ = [
    "FORMATS",
    "TombstoneView",
    "disposition_report",
    "purge_expired_tombstones",
    "render_disposition",
    "tombstone_cutoff",
]

FORMATS = ("csv", "json", "html")
_FIELDS = (
    "disposed_at",
    "account",
    "action",
    "folder",
    "internal_date",
    "date_header",
    "size",
    "rule",
    "policy_hash",
    "plan_ref",
    "approvers",
    "message_id_hash",
)


@dataclass(frozen=True)
class TombstoneView:
    disposed_at: datetime
    account: str
    action: str
    folder: str
    internal_date: datetime | None
    date_header: datetime | None
    size: int
    rule: str
    policy_hash: str
    plan_ref: str
    approvers: str
    message_id_hash: str


def disposition_report(
    store: Store,
    *,
    since: datetime,
    until: datetime | None = None,
    account: str | None = None,
) -> list[TombstoneView]:
    """Every message deleted for good in ``[since, until)``, oldest first."""
    if until is not None and until <= since:
        raise InputError("--until must be later than --since")
    with store.transaction() as session:
        return [
            TombstoneView(**{name: getattr(row, name) for name in _FIELDS})
            for row in governance_queries.tombstones(
                session, since=since, until=until, account=account
            )
        ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _csv_safe(text: str) -> str:
    """Neutralise a spreadsheet formula (a folder named ``=HYPERLINK(…)``) with a quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_disposition(
    rows: Sequence[TombstoneView],
    fmt: str,
    *,
    since: datetime,
    until: datetime | None,
    generated_at: datetime,
) -> str:
    """The report as CSV, JSON or a self-contained HTML page (every value escaped)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_FIELDS)
        for row in rows:
            writer.writerow([_csv_safe(_cell(getattr(row, name))) for name in _FIELDS])
        return out.getvalue()
    if fmt == "json":
        document = {
            "since": since.isoformat(),
            "until": until.isoformat() if until else None,
            "generated_at": generated_at.isoformat(),
            "count": len(rows),
            "total_bytes": sum(row.size for row in rows),
            "tombstones": [
                {name: _json_value(getattr(row, name)) for name in _FIELDS} for row in rows
            ],
        }
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if fmt == "html":
        return _html(rows, since=since, until=until, generated_at=generated_at)
    raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _html(
    rows: Sequence[TombstoneView],
    *,
    since: datetime,
    until: datetime | None,
    generated_at: datetime,
) -> str:
    e = html.escape
    period = f"{since:%Y-%m-%d %H:%M} UTC – " + (f"{until:%Y-%m-%d %H:%M} UTC" if until else "now")
    head = "".join(f"<th>{e(name.replace('_', ' '))}</th>" for name in _FIELDS)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{e(_cell(getattr(row, name)))}</td>" for name in _FIELDS) + "</tr>"
        for row in rows
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Disposition report</title>\n"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;font-size:12px}</style>\n"
        "</head>\n<body>\n<h1>Disposition report</h1>\n"
        f"<p>Messages deleted for good, {e(period)}: {len(rows):,} "
        f"({sum(r.size for r in rows):,} bytes). Generated {e(generated_at.isoformat())}.</p>\n"
        "<p>Each row proves one deletion: the rule and policy version (sha256 of the rules "
        "file) it was decided under, the plan and who approved it. No content and no "
        "addresses are kept; the Message-ID is shown only as its sha256.</p>\n"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
        "</body>\n</html>\n"
    )


def tombstone_cutoff(keep: Duration, now: datetime) -> datetime:
    """The latest instant whose tombstones have been kept ``keep`` by ``now``.

    Every ``t <= cutoff`` has ``keep.add_to(t) <= now``: months and years step back on
    the calendar and clamp to a shorter month's end, which only ever keeps longer.
    """
    if keep.unit is DurationUnit.DAYS:
        return now - timedelta(days=keep.amount)
    if keep.unit is DurationUnit.WEEKS:
        return now - timedelta(weeks=keep.amount)
    months = keep.amount * 12 if keep.unit is DurationUnit.YEARS else keep.amount
    year, month0 = divmod(now.year * 12 + now.month - 1 - months, 12)
    if year < 1:
        return datetime.min.replace(tzinfo=now.tzinfo)
    day = min(now.day, calendar.monthrange(year, month0 + 1)[1])
    return now.replace(year=year, month=month0 + 1, day=day)


def purge_expired_tombstones(
    session: Session, policy: Policy, *, account: str, now: datetime
) -> int:
    """Delete ``account``'s tombstones older than ``policy.tombstone_keep``; return how many.

    Runs in the caller's transaction so the count is audited atomically with the
    deletion (the scheduled run records it in its ``run:scheduled`` entry).
    """
    cutoff = tombstone_cutoff(policy.tombstone_keep, now)
    return governance_queries.delete_tombstones_before(session, cutoff, account=account)
