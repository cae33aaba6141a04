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
    store: Store,
    spec: str,
    *,
    zone: ZoneInfo,
    account: str | None = None,
    include_restricted: bool = True,
) -> list[int]:
    """Index row ids for ``spec``; raises ``NotFoundError`` when nothing matches.

    With ``include_restricted=False`` mail under a restriction of processing is left
    out, exactly as if it did not match (for people without ``restricted_read``).
    """
    text = spec.strip()
    hide = not include_restricted
    if text.isdigit():
        with store.transaction() as session:
            rows = search_queries.rows_by_id(
                session, [int(text)], account=account, hide_restricted=hide
            )
        what = f"index id {text}"
    else:
        if ":" not in text and "@" in text and " " not in text:
            query = parse_query(f'msgid:"{text.strip("<>")}"')
            what = f"Message-ID {text}"
        else:
            query = parse_query(text)
            what = f"query {text!r}"
        with store.transaction() as session:
            rows = list(
                search_queries.matching_rows(
                    session, query, zone=zone, account=account, hide_restricted=hide
                )
            )
    if not rows:
        raise NotFoundError(
            f"no indexed message matches {what}; run 'mailhygiene sync' first "
            "or check it with 'mailhygiene search'"
        )
    return rows
