"""Retention verdicts kept in the index, so that planning is a query rather than a
judgement of every message.

``policy.retention_verdict`` depends only on a message's own facts and on the retention
part of the policy, so it is computed once per message and policy version and stored
(``retention_verdicts``): after a sync only the new mail is judged, after a change of
``rules.toml`` everything once. Holds, cases and case keywords change on their own clock;
the few messages they touch are judged in full by ``policy.decide`` every time
(``purge.plan``). The purge itself never trusts a stored verdict: ``purge.execute``
decides again, message by message, from fresh facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailhygiene.policy import Policy, retention_verdict
from mailhygiene.store import facts_queries, retention_queries
from mailhygiene.store.session import Session

__all__ = ["refresh_verdicts", "verdict_key"]

_BATCH = 5000
BULK_SAVE = 20_000
"""From this many verdicts saved at once, the database's statistics are refreshed."""


def verdict_key(policy: Policy) -> retention_queries.VerdictKey:
    """Which stored verdicts hold under ``policy``."""
    return retention_queries.VerdictKey(policy.retention_key, policy.retention_reads_keywords)


def refresh_verdicts(
    session: Session, policy: Policy, *, account: str, exclude_folders: Sequence[str] = ()
) -> int:
    """Compute and store the verdict of every message of ``account`` that lacks a current
    one; returns how many were computed."""
    key = verdict_key(policy)
    stale = retention_queries.stale_ids(session, account, key, exclude_folders=exclude_folders)
    for start in range(0, len(stale), _BATCH):
        query = retention_queries.facts_select(account, stale[start : start + _BATCH])
        batch = facts_queries.indexed_rows(
            session, query, account=account, cases={}, holds_for=_no_holds
        )
        rows: list[tuple[Any, ...]] = []
        policy_key, compare_flags = key.policy_key, key.compare_flags
        for row in batch:
            verdict = retention_verdict(row.facts, policy)
            reason = verdict.reason
            rows.append(
                (
                    row.message_row,
                    policy_key,
                    row.flags if compare_flags else "",
                    reason.kind.value,
                    reason.name,
                    verdict.keep_until,
                    reason.detail,
                )
            )
        retention_queries.save_verdicts(session, rows)
    if len(stale) >= BULK_SAVE:
        retention_queries.settle_bulk_save(session)
    return len(stale)


def _no_holds(_row: int) -> tuple[str, ...]:
    return ()
