"""The scheduled job (``mailhygiene run``): sync, link cases, expunge, plan, maybe execute.

Routine volumes are handled without a person: a plan within the policy's
``auto_approve_limit`` is approved by the scheduler and executed. A larger plan is a
bulk cleanup: it is left pending for a manager and the run says so (status
``awaiting_approval``, exit code 3) so monitoring can alert someone.

Inside a run batch (``runs``) the run is given its ``claim``: the account is marked
done in the same transaction as its ``run:scheduled`` audit entry, so a worker killed
at any point has either finished the account for the batch, entry and all, or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cases.mirror import KeywordServer, mirror_keywords
from mailhygiene.disposition import purge_expired_tombstones
from mailhygiene.imap.protocol import MailServer
from mailhygiene.index import SyncProgress, SyncRequest, SyncResult, sync_account
from mailhygiene.policy import Policy
from mailhygiene.processes import Parallelism
from mailhygiene.purge.approve import auto_approve, is_bulk
from mailhygiene.purge.execute import ExecutionReport, PurgeServer, execute_plan
from mailhygiene.purge.lock import account_lock
from mailhygiene.purge.plan import PlanSummary, plan_purge
from mailhygiene.purge.quarantine import QuarantineReport, QuarantineServer, expunge_due
from mailhygiene.store import purge_queries, run_queries
from mailhygiene.store.session import Store


class RunStatus(StrEnum):
    NOTHING_TO_DO = "nothing_to_do"
    EXECUTED = "executed"
    AWAITING_APPROVAL = "awaiting_approval"


class RunServer(MailServer, PurgeServer, QuarantineServer, KeywordServer, Protocol):
    """Everything a scheduled run asks of the server."""


@dataclass
class RunOutcome:
    account: str
    status: RunStatus
    sync: SyncResult
    linked: int
    quarantine: QuarantineReport
    plan: PlanSummary
    execution: ExecutionReport | None
    keywords_set: int = 0  # per-case keywords mirrored to the server in this run


Linker = Callable[[Store, Policy, str, datetime, str], int]


def scheduled_run(
    store: Store,
    server: RunServer,
    policy: Policy,
    request: SyncRequest,
    *,
    actor: str,
    now: datetime,
    link_cases: Linker,
    progress: SyncProgress | None = None,
    parallel: Parallelism | None = None,
    claim: run_queries.Claim | None = None,
) -> RunOutcome:
    """One scheduled run for one account; refuses to overlap with another run.

    ``parallel`` is passed to the sync and the plan; ``claim`` is the account's run-batch
    claim.
    """
    account = request.account
    stale = claim.stale_holder if claim else None
    with account_lock(store, account, now=now, purpose="start a scheduled run", stale_holder=stale):
        synced = sync_account(store, server, request, now=now, progress=progress, parallel=parallel)
        linked = link_cases(store, policy, account, now, actor)
        # why: staff see in their mail client what a case protects; a failure here only
        # delays the copy (the database is the truth), so it never stops the run
        mirrored = mirror_keywords(store, server, policy, account, now=now, actor=actor)
        expunged = expunge_due(store, server, policy, account=account, actor=actor, now=now)
        summary = plan_purge(
            store,
            policy,
            account=account,
            now=now,
            actor=actor,
            note="scheduled run",
            parallel=parallel,
        )
        execution: ExecutionReport | None = None
        if summary.ref is None:
            status = RunStatus.NOTHING_TO_DO
        else:
            with store.transaction() as session:
                bulk = is_bulk(purge_queries.get_plan(session, summary.ref), policy)
            if bulk:
                status = RunStatus.AWAITING_APPROVAL
            else:
                auto_approve(store, summary.ref, policy, actor=actor, now=now)
                execution = execute_plan(store, server, policy, summary.ref, actor=actor, now=now)
                status = RunStatus.EXECUTED
        with store.transaction() as session:
            if claim is not None:
                run_queries.finish(session, claim, outcome=status.value, at=now)
            tombstones = purge_expired_tombstones(session, policy, account=account, now=now)
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.RUN_SCHEDULED,
                subject=account,
                data={
                    "status": status.value,
                    "new_mail": synced.new,
                    "linked": linked,
                    "keywords_set": mirrored.marked,
                    "plan": summary.ref,
                    "planned": summary.item_count,
                    "expunged_from_quarantine": expunged.expunged,
                    "executed": execution.done if execution else 0,
                    "tombstones_purged": tombstones,
                    **({"batch": claim.batch} if claim else {}),
                },
                at=now,
            )
    return RunOutcome(
        account, status, synced, linked, expunged, summary, execution, mirrored.marked
    )
