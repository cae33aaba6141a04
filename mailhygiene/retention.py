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

from collections.abc import Iterable, Sequence
from typing import Any

from mailhygiene.policy import Policy, retention_verdict
from mailhygiene.processes import Parallelism, map_in_workers
from mailhygiene.store import facts_queries, retention_queries
from mailhygiene.store.session import Session, Store, open_store

__all__ = ["refresh_verdicts", "verdict_key"]

_BATCH = 5000
BULK_SAVE = 20_000
"""From this many verdicts saved at once, the database's statistics are refreshed."""


def verdict_key(policy: Policy) -> retention_queries.VerdictKey:
    """Which stored verdicts hold under ``policy``."""
    return retention_queries.VerdictKey(policy.retention_key, policy.retention_reads_keywords)


def refresh_verdicts(
    session: Session,
    policy: Policy,
    *,
    account: str,
    exclude_folders: Sequence[str] = (),
    store: Store | None = None,
    parallel: Parallelism | None = None,
) -> int:
    """Compute and store the verdict of every message of ``account`` that lacks a current
    one; returns how many were computed.

    With ``store`` (the database ``session`` is on), as many as ``parallel`` thinks worth
    it (after a change of ``rules.toml``, every message) are judged in worker processes,
    each reading the facts over its own connection: judging is pure Python, about 100 µs
    a message. This session saves what they return, as it arrives.
    """
    stale = retention_queries.stale_ids(
        session, account, verdict_key(policy), exclude_folders=exclude_folders
    )
    chunks = [stale[start : start + _BATCH] for start in range(0, len(stale), _BATCH)]
    parallel = parallel or Parallelism()
    judged: Iterable[list[VerdictRow]]
    if store is not None and parallel.applies(len(stale), shareable=store.shareable):
        judged = map_in_workers(
            _judge_in_worker,
            chunks,
            workers=parallel.workers,
            initializer=_open_in_worker,
            initargs=(store.url, store.schema, policy, account),
        )
    else:
        judged = (_judge(session, policy, account, chunk) for chunk in chunks)
    for rows in judged:
        retention_queries.save_verdicts(session, rows)
    if len(stale) >= BULK_SAVE:
        retention_queries.settle_bulk_save(session)
    return len(stale)


VerdictRow = tuple[Any, ...]
"""A verdict as ``retention_queries.save_verdicts`` stores it."""


def _judge(session: Session, policy: Policy, account: str, ids: Sequence[int]) -> list[VerdictRow]:
    """The verdicts of the messages ``ids``, from their indexed facts."""
    key = verdict_key(policy)
    policy_key, compare_flags = key.policy_key, key.compare_flags
    rows: list[VerdictRow] = []
    for row in facts_queries.iter_indexed(
        session, account=account, message_rows=ids, cases={}, holds_for=_no_holds
    ):
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
    return rows


def _no_holds(_row: int) -> tuple[str, ...]:
    return ()


# -- in a worker process -------------------------------------------------------------------
_worker: tuple[Store, Policy, str] | None = None


def _open_in_worker(url: str, schema: str | None, policy: Policy, account: str) -> None:
    global _worker
    _worker = (open_store(url, schema=schema, migrate=False), policy, account)


def _judge_in_worker(ids: Sequence[int]) -> list[VerdictRow]:
    if _worker is None:
        raise RuntimeError("_judge_in_worker runs only in a worker started by refresh_verdicts")
    store, policy, account = _worker
    with store.transaction() as session:
        return _judge(session, policy, account, ids)
