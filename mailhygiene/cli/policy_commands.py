"""``search``, ``explain``, ``rules check``, ``hold`` and the scheduled ``run``."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any

import click

from mailhygiene.cli.auth import acting_user, acting_user_may, requires
from mailhygiene.cli.context import app, parse_now
from mailhygiene.cli.governance_commands import RULES_COMMANDS, render_release_preview, report
from mailhygiene.cli.output import fmt_time, interactive, json_option, print_json, print_table
from mailhygiene.cli.progress import BatchBar, SyncBar
from mailhygiene.config.rules import read_rules_text
from mailhygiene.governance import record_policy_version
from mailhygiene.holds import list_holds, place_hold, release_hold
from mailhygiene.index import SyncProgress, SyncRequest
from mailhygiene.lookup import resolve_messages
from mailhygiene.reports import explain_message, search
from mailhygiene.roles import Permission
from mailhygiene.runs import (
    AccountResult,
    BatchCounts,
    BatchReport,
    BatchSpec,
    check_batch_key,
    default_batch_key,
    run_batch,
)
from mailhygiene.scheduled import RunOutcome, RunStatus, scheduled_run
from mailhygiene.simulation import preview_hold_release
from mailhygiene.store.session import Store

now_option = click.option(
    "--now", "now_text", metavar="DATE", help="Act as if it were this instant (ISO 8601)."
)


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option("--account", "account_name", metavar="NAME", help="Only this account.")
@click.option("--limit", default=50, show_default=True, help="Messages per page.")
@click.option("--offset", default=0, help="Skip this many matches (paging).")
@json_option
@click.pass_context
@requires(Permission.READ)
def search_command(
    ctx: click.Context,
    query: tuple[str, ...],
    account_name: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Find indexed messages: from:, to:, cc:, addr:, subject:, folder:, keyword:,
    before:/after:/on: DATE, larger:/smaller: SIZE, msgid:, case:, -negation.

    Example: mailhygiene search from:anna@example.se before:2025-01-01 subject:faktura
    """
    obj = app(ctx)
    page = search(
        obj.store,
        " ".join(query),
        zone=obj.policy.zone,
        account=account_name,
        limit=limit,
        offset=offset,
        include_restricted=acting_user_may(ctx, Permission.RESTRICTED_READ),
    )
    if as_json:
        print_json(page)
        return
    print_table(
        f"{page['total']:,} message(s) match {page['query']}",
        ("id", "folder", "received", "from", "subject", "flags"),
        [
            (
                m["id"],
                m["folder"],
                fmt_time(m["internal_date"]),
                m["from"],
                m["subject"][:70],
                m["flags"],
            )
            for m in page["messages"]
        ],
    )
    shown = page["offset"] + len(page["messages"])
    if shown < page["total"]:
        click.echo(f"Showing {page['offset'] + 1}–{shown}; next page: --offset {shown}")


@click.command("explain")
@click.argument("message")
@now_option
@json_option
@click.pass_context
@requires(Permission.READ)
def explain_command(ctx: click.Context, message: str, now_text: str | None, as_json: bool) -> None:
    """Say why a message is kept or when it will go, with every reason that applies.

    MESSAGE is a Message-ID, an index id or a search query.
    Example: mailhygiene explain "<abc@kund.example>" --now 2026-03-01
    """
    obj = app(ctx)
    now = parse_now(now_text)
    explained = [
        explain_message(obj.store, obj.policy, row, now=now)
        for row in resolve_messages(
            obj.store,
            message,
            zone=obj.policy.zone,
            include_restricted=acting_user_may(ctx, Permission.RESTRICTED_READ),
        )[:20]
    ]
    if as_json:
        print_json(explained)
        return
    for item in explained:
        click.echo(
            f"#{item['id']} {item['folder']} uid {item['uid']} — {item['subject']!r} "
            f"from {item['from'] or '?'}, received {fmt_time(item['received'])}"
        )
        until = fmt_time(item["purgeable_from"]) if item["purgeable_from"] else "not foreseeable"
        verb = "PURGE now" if item["action"] == "purge" else "KEEP"
        click.echo(f"  {verb}; purgeable from: {until}")
        for reason in item["reasons"]:
            click.echo(f"  - {reason['kind']} {reason['name']}: {reason['detail']}")


@click.group("rules")
def rules() -> None:
    """The retention policy file (rules.toml)."""


@rules.command("check")
@json_option
@click.pass_context
@requires(Permission.READ)
def rules_check(ctx: click.Context, as_json: bool) -> None:
    """Validate rules.toml and print the effective policy in words.

    Example: mailhygiene rules check
    """
    obj = app(ctx)
    policy = obj.policy
    if as_json:
        print_json(
            {
                "file": str(obj.settings.rules_path),
                "sha256": policy.source_hash,
                "policy": policy.describe().splitlines(),
            }
        )
        return
    click.echo(f"{obj.settings.rules_path}: valid (sha256 {policy.source_hash[:16]}…)")
    for line in policy.describe().splitlines():
        click.echo(f"  {line}")


for _command in RULES_COMMANDS:
    rules.add_command(_command)


@click.group("hold")
def hold() -> None:
    """Legal holds: keep every matching message, whatever retention says."""


@hold.command("place")
@click.argument("name")
@click.option("--query", required=True, help="Search query selecting the held mail.")
@click.option("--reason", required=True, help="Why (e.g. the court case); shown in explain.")
@now_option
@json_option
@click.pass_context
@requires(Permission.HOLD_MANAGE)
def hold_place(
    ctx: click.Context, name: str, query: str, reason: str, now_text: str | None, as_json: bool
) -> None:
    """Place a hold on present and future mail matching a query.

    Example: mailhygiene hold place tvist-2026 --query "addr:@motpart.example" --reason "tvist"
    """
    view = place_hold(
        app(ctx).store,
        name=name,
        query=query,
        reason=reason,
        actor=acting_user(ctx),
        now=parse_now(now_text),
    )
    if as_json:
        print_json(asdict(view))
        return
    click.echo(f"Hold {view.name} placed on: {view.query}")


@hold.command("release")
@click.argument("name")
@click.option("--preview", is_flag=True, help="Only show what would become purgeable, and when.")
@click.option("--account", "account_name", metavar="NAME", help="With --preview: the account.")
@now_option
@json_option
@click.pass_context
@requires(Permission.HOLD_MANAGE)
def hold_release(
    ctx: click.Context,
    name: str,
    preview: bool,
    account_name: str | None,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Release a hold. Nothing is deleted now: the mail re-enters normal retention.

    --preview releases nothing and shows what the next plan could purge, and when.
    Example: mailhygiene hold release tvist-2026 --preview
    """
    obj = app(ctx)
    if preview:
        account = obj.settings.account(account_name)
        render_release_preview(
            preview_hold_release(
                obj.store, obj.policy, name=name, account=account.name, now=parse_now(now_text)
            ),
            as_json,
        )
        return
    if account_name:
        raise click.UsageError("--account is only used with --preview")
    view = release_hold(obj.store, name=name, actor=acting_user(ctx), now=parse_now(now_text))
    if as_json:
        print_json(asdict(view))
        return
    click.echo(f"Hold {view.name} released; its mail is purged only by a later approved plan.")


@hold.command("list")
@click.option("--all", "include_released", is_flag=True, help="Include released holds.")
@json_option
@click.pass_context
@requires(Permission.READ)
def hold_list(ctx: click.Context, include_released: bool, as_json: bool) -> None:
    """List legal holds.

    Example: mailhygiene hold list --all
    """
    holds = list_holds(app(ctx).store, include_released=include_released)
    if as_json:
        print_json([asdict(h) for h in holds])
        return
    print_table(
        "Legal holds",
        ("name", "query", "reason", "placed", "by", "released"),
        [
            (h.name, h.query, h.reason, fmt_time(h.placed_at), h.placed_by, fmt_time(h.released_at))
            for h in holds
        ],
    )


@click.command("run")
@click.option("--account", "account_name", metavar="NAME", help="Only this account (default: all).")
@click.option(
    "--all-accounts",
    is_flag=True,
    help="Every account, as one batch that worker processes and machines share; each "
    "account runs once in the batch.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="With --all-accounts: worker processes on this machine (1: one account after "
    "another, in this process).",
)
@click.option(
    "--batch",
    "batch_key",
    metavar="KEY",
    help="With --all-accounts: the batch to join (default: today's date in the policy's "
    "time zone, so all runs of one day share a batch).",
)
@now_option
@json_option
@click.pass_context
@requires(Permission.RUN_SCHEDULED)
def run_command(
    ctx: click.Context,
    account_name: str | None,
    all_accounts: bool,
    workers: int,
    batch_key: str | None,
    now_text: str | None,
    as_json: bool,
) -> None:
    """The scheduled job: sync, link cases, expunge quarantine, plan, and execute routine
    volumes. A plan over the auto-approval limit waits for a manager: exit code 3.

    With --all-accounts the accounts form a batch, run by --workers processes here and
    by every other machine that runs the same batch on the same PostgreSQL database:
    each account is claimed by one worker and runs once in the batch, with at most
    [run] max_connections_per_server accounts of one IMAP server at a time. Running the
    batch again runs only what is left (an account whose worker died, once its lease
    has run out). A failed account is one line; the others still run (exit code 1).

    Example (cron, nightly): MAILHYGIENE_ACTOR=scheduler mailhygiene run --json

    Example (many mailboxes, cron on each machine): mailhygiene run --all-accounts --workers 4
    """
    from mailhygiene.cases.service import link_after_sync

    if account_name and all_accounts:
        raise click.UsageError("--account and --all-accounts cannot be used together")
    if not all_accounts and (workers != 1 or batch_key is not None):
        raise click.UsageError("--workers and --batch go with --all-accounts")
    if batch_key is not None:
        check_batch_key(batch_key)
    obj = app(ctx)
    settings = obj.settings
    now = parse_now(now_text)
    record_policy_version(
        obj.store,
        obj.policy,
        read_rules_text(settings.rules_path),
        actor=acting_user(ctx),
        now=now,
    )
    if all_accounts:
        spec = BatchSpec(
            key=batch_key or default_batch_key(now, obj.policy.zone),
            accounts=tuple(settings.accounts.values()),
            policy=obj.policy,
            actor=acting_user(ctx),
            now=now if now_text else None,
            max_per_server=settings.run.max_connections_per_server,
        )
        _render_batch(_run_batch(obj.store, spec, workers, as_json), as_json)
        return
    accounts = (
        [settings.account(account_name)] if account_name else list(settings.accounts.values())
    )
    outcomes: list[RunOutcome] = []
    for account in accounts:
        request = SyncRequest(
            account=account.name,
            host=account.host,
            username=account.username,
            include=account.folders,
            exclude=account.exclude,
        )
        with obj.server(account.name) as server:
            bar = SyncBar() if not as_json and interactive() else None
            if bar is not None:
                with bar:
                    outcome = scheduled_run(
                        obj.store,
                        server,
                        obj.policy,
                        request,
                        actor=acting_user(ctx),
                        now=now,
                        link_cases=link_after_sync,
                        progress=bar,
                    )
            else:
                outcome = scheduled_run(
                    obj.store,
                    server,
                    obj.policy,
                    request,
                    actor=acting_user(ctx),
                    now=now,
                    link_cases=link_after_sync,
                )
        outcomes.append(outcome)
    waiting = [o for o in outcomes if o.status is RunStatus.AWAITING_APPROVAL]
    if as_json:
        print_json([_outcome_dict(o) for o in outcomes])
    else:
        for o in outcomes:
            click.echo(_outcome_line(o))
    if waiting:
        sys.exit(3)


def _outcome_dict(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "account": outcome.account,
        "status": outcome.status.value,
        "new_mail": outcome.sync.new,
        "threads_linked": outcome.linked,
        "keywords_set": outcome.keywords_set,
        "quarantine_expunged": outcome.quarantine.expunged,
        "plan": outcome.plan.ref,
        "planned": outcome.plan.item_count,
        "executed": outcome.execution.done if outcome.execution else 0,
        "skipped": outcome.execution.skipped if outcome.execution else {},
    }


def _outcome_line(outcome: RunOutcome) -> str:
    head = (
        f"{outcome.account}: {outcome.sync.new:,} new, {outcome.linked:,} threads linked, "
        f"{outcome.quarantine.expunged:,} deleted from quarantine; "
    )
    if outcome.status is RunStatus.NOTHING_TO_DO:
        return head + "nothing to purge."
    if outcome.status is RunStatus.EXECUTED and outcome.execution:
        return head + (
            f"plan {outcome.plan.ref}: {outcome.execution.done:,} moved/deleted, "
            f"{sum(outcome.execution.skipped.values()):,} skipped."
        )
    return head + (
        f"plan {outcome.plan.ref} has {outcome.plan.item_count:,} messages, over the "
        f"auto-approval limit: waiting for a manager "
        f"('mailhygiene purge show {outcome.plan.ref}')."
    )


def _run_batch(store: Store, spec: BatchSpec, workers: int, as_json: bool) -> BatchReport:
    """The batch with progress on a terminal: accounts finished of all (several workers),
    or each account's sync bars as ``run`` shows them (one worker); nothing with --json."""
    if as_json or not interactive():
        return run_batch(store, spec, workers=workers)
    if workers == 1:
        return run_batch(store, spec, workers=1, view=_SyncBars())
    with BatchBar(spec.key) as bar:
        return run_batch(store, spec, workers=workers, view=bar)


class _SyncBars:
    """``runs.BatchView`` for one worker: the sync bars of each account, as ``run`` shows."""

    def counts(self, counts: BatchCounts) -> None:
        return None

    def account(self, name: str) -> AbstractContextManager[SyncProgress | None]:
        return SyncBar()


def _render_batch(report: BatchReport, as_json: bool) -> None:
    results = sorted(report.results, key=lambda result: result.account)
    if as_json:
        print_json([_result_dict(result, report.key) for result in results])
    else:
        for result in results:
            if result.outcome is not None:
                click.echo(_outcome_line(result.outcome))
            else:
                click.echo(f"{result.account}: FAILED: {result.error}")
        click.echo(_batch_line(report))
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    codes = [result.exit_code for result in results if result.error is not None]
    codes += [1 for _ in report.problems]
    if any(r.outcome and r.outcome.status is RunStatus.AWAITING_APPROVAL for r in results):
        codes.append(3)
    if codes:
        sys.exit(max(codes))


def _result_dict(result: AccountResult, key: str) -> dict[str, Any]:
    if result.outcome is not None:
        return {**_outcome_dict(result.outcome), "batch": key}
    return {"account": result.account, "status": "failed", "error": result.error, "batch": key}


def _batch_line(report: BatchReport) -> str:
    counts = report.counts
    state = (
        f"{counts.total:,} accounts: {counts.done:,} done, {counts.failed:,} failed, "
        f"{counts.running:,} running, {counts.pending:,} pending."
    )
    if not report.results:
        return f"batch {report.key}: nothing left to run here. {state}"
    return f"batch {report.key}: {state}"


COMMANDS = [search_command, explain_command, rules, hold, run_command, report]
