"""Read-only reports over the index, as plain data for the CLI and the web page."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailhygiene.errors import NotFoundError
from mailhygiene.holds import hold_lookup
from mailhygiene.policy import Policy, decide
from mailhygiene.query import parse_query
from mailhygiene.store import facts_queries, report_queries, search_queries
from mailhygiene.store.session import Store


def index_status(store: Store) -> dict[str, Any]:
    """Accounts with their folders, counts, sizes, sync times and capabilities."""
    with store.transaction() as session:
        return {"accounts": report_queries.account_summaries(session)}


def search(
    store: Store,
    query_text: str,
    *,
    zone: ZoneInfo,
    account: str | None,
    limit: int,
    offset: int = 0,
    include_restricted: bool = False,
) -> dict[str, Any]:
    """One page of messages matching a query, newest first, and the total count.

    Mail under a restriction of processing (GDPR art. 18) is left out unless
    ``include_restricted`` (callers pass whether the person holds ``restricted_read``).
    """
    query = parse_query(query_text)
    hide = not include_restricted
    with store.transaction() as session:
        total = search_queries.count_matching(
            session, query, zone=zone, account=account, hide_restricted=hide
        )
        rows = search_queries.search_messages(
            session,
            query,
            zone=zone,
            account=account,
            limit=limit,
            offset=offset,
            hide_restricted=hide,
        )
    return {"query": query.describe(), "total": total, "offset": offset, "messages": rows}


def explain_message(store: Store, policy: Policy, row_id: int, *, now: datetime) -> dict[str, Any]:
    """The verdict for one message at ``now`` with every reason, for "why is this kept?"."""
    with store.transaction() as session:
        account = facts_queries.account_of(session, row_id)
        holds_for = hold_lookup(session, account=account, zone=policy.zone)
        rows = list(
            facts_queries.iter_indexed(
                session, account=account, holds_for=holds_for, message_rows=[row_id]
            )
        )
    if not rows:
        raise NotFoundError(f"no indexed message with id {row_id}")
    row = rows[0]
    verdict = decide(row.facts, policy, now)
    return {
        "id": row.message_row,
        "account": account,
        "folder": row.folder,
        "uid": row.uid,
        "message_id": row.message_id,
        "subject": row.facts.subject,
        "from": row.facts.from_addr,
        "received": row.facts.internal_date,
        "thread_id": row.thread_id,
        "action": verdict.action.value,
        "purgeable_from": verdict.keep_until,
        "reasons": [
            {"kind": r.kind.value, "name": r.name, "detail": r.detail} for r in verdict.reasons
        ],
        "evaluated_at": now,
    }
