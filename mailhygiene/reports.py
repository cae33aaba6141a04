"""Read-only reports over the index, as plain data for the CLI and the web page."""

from __future__ import annotations

from typing import Any

from mailhygiene.store import report_queries
from mailhygiene.store.session import Store


def index_status(store: Store) -> dict[str, Any]:
    """Accounts with their folders, counts, sizes, sync times and capabilities."""
    with store.transaction() as session:
        return {"accounts": report_queries.account_summaries(session)}
