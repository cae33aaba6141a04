"""Turn what a person types for "a message" into index rows.

A MESSAGE argument may be a Message-ID (``<id@host>`` or ``id@host``), an index row id
(digits), or a search query (``from:anna@example.se subject:faktura``).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from mailhygiene.errors import NotFoundError
from mailhygiene.query import parse_query
from mailhygiene.store import search_queries
from mailhygiene.store.session import Store


def resolve_messages(
    store: Store, spec: str, *, zone: ZoneInfo, account: str | None = None
) -> list[int]:
    """Index row ids for ``spec``; raises ``NotFoundError`` when nothing matches."""
    text = spec.strip()
    if text.isdigit():
        with store.transaction() as session:
            rows = search_queries.rows_by_id(session, [int(text)], account=account)
        what = f"index id {text}"
    elif ":" not in text and "@" in text and " " not in text:
        query = parse_query(f'msgid:"{text.strip("<>")}"')
        with store.transaction() as session:
            rows = list(search_queries.matching_rows(session, query, zone=zone, account=account))
        what = f"Message-ID {text}"
    else:
        query = parse_query(text)
        with store.transaction() as session:
            rows = list(search_queries.matching_rows(session, query, zone=zone, account=account))
        what = f"query {text!r}"
    if not rows:
        raise NotFoundError(
            f"no indexed message matches {what}; run 'mailhygiene sync' first "
            "or check it with 'mailhygiene search'"
        )
    return rows
