"""``purge`` (plan, list, show, approve, reject, execute, resume) and ``quarantine``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from mailhygiene.cli.auth import acting_user, requires
from mailhygiene.cli.context import app, parse_now
from mailhygiene.cli.output import (
    fmt_time,
    interactive,
    json_option,
    print_json,
    print_pairs,
    print_table,
)
from mailhygiene.cli.progress import ExecuteBar
from mailhygiene.config.rules import read_rules_text
from mailhygiene.governance import record_policy_version
from mailhygiene.purge import quarantine as quarantine_service
from mailhygiene.purge.approve import approve_plan, reject_plan
from mailhygiene.purge.execute import ExecutionReport, execute_plan
from mailhygiene.purge.plan import PlanSummary, plan_purge, stored_summary
from mailhygiene.purge.views import list_plan_summaries, plan_items_sample, resumable_plans
from mailhygiene.roles import Permission

now_option = click.option(
    "--now", "now_text", metavar="DATE", help="Act as if it were this instant (ISO 8601)."
)
account_option = click.option(
    "--account", "account_name", metavar="NAME", help="The account (default: the only one)."
)


@click.group()
def purge() -> None:
    """Plan, approve and execute the removal of mail past its retention."""


def _render_summary(summary: PlanSummary) -> None:
    if summary.ref is None:
        click.echo(
            f"Nothing to purge in account {summary.account!r} at {fmt_time(summary.planned_for)}."
        )
    else:
        print_pairs(
            [
                ("plan", summary.ref),
                ("account", summary.account),
                ("status", summary.status),
                ("created", f"{fmt_time(summary.created_at)} by {summary.created_by}"),
                ("expires", fmt_time(summary.expires_at)),
                ("messages", f"{summary.item_count:,}"),
                ("size", f"{summary.total_bytes / 1_048_576:,.1f} MB"),
                ("content hash", summary.content_hash[:16] + "…"),
            ]
        )
    if summary.by_folder:
        print_table(
            "By folder",
            ("folder", "messages", "bytes"),
            [(k, v["messages"], v["bytes"]) for k, v in summary.by_folder.items()],
        )
    if summary.by_reason:
        print_table(
            "By reason",
            ("reason", "messages", "bytes"),
            [(k, v["messages"], v["bytes"]) for k, v in summary.by_reason.items()],
        )
    if summary.kept:
        print_table("Kept", ("because of", "messages"), list(summary.kept.items()))
    if summary.undated:
        click.echo(
            f"{summary.undated} message(s) have no usable date and are kept; "
            "'mailhygiene search' can list them for review."
        )


def _summary_dict(summary: PlanSummary) -> dict[str, Any]:
    return asdict(summary)


@purge.command("plan")
@account_option
@now_option
@click.option("--note", default="", help="A note stored with the plan.")
@json_option
@click.pass_context
@requires(Permission.PLAN_CREATE)
def plan_command(
    ctx: click.Context, account_name: str | None, now_text: str | None, note: str, as_json: bool
) -> None:
    """Compute what is past retention now and store it as a plan to approve.

    Nothing is changed on the server. Example: mailhygiene purge plan --account support
    """
    obj = app(ctx)
    account = obj.settings.account(account_name)
    now = parse_now(now_text)
    text = read_rules_text(obj.settings.rules_path)
    record_policy_version(obj.store, obj.policy, text, actor=acting_user(ctx), now=now)
    summary = plan_purge(
        obj.store, obj.policy, account=account.name, now=now, actor=acting_user(ctx), note=note
    )
    if as_json:
        print_json(_summary_dict(summary))
        return
    _render_summary(summary)
    if summary.ref:
        click.echo(f"Next: a manager reviews and runs 'mailhygiene purge approve {summary.ref}'.")


@purge.command("list")
@account_option
@json_option
@click.pass_context
@requires(Permission.READ)
def list_command(ctx: click.Context, account_name: str | None, as_json: bool) -> None:
    """List recent plans with their status.

    Example: mailhygiene purge list
    """
    plans = list_plan_summaries(app(ctx).store, account=account_name)
    if as_json:
        print_json([_summary_dict(p) for p in plans])
        return
    print_table(
        "Plans",
        ("plan", "account", "status", "messages", "created", "by", "expires"),
        [
            (
                p.ref,
                p.account,
                p.status,
                p.item_count,
                fmt_time(p.created_at),
                p.created_by,
                fmt_time(p.expires_at),
            )
            for p in plans
        ],
    )


@purge.command("show")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--sample", default=10, show_default=True, help="Messages to show per reason.")
@json_option
@click.pass_context
@requires(Permission.READ)
def show_command(ctx: click.Context, plan_ref: str, sample: int, as_json: bool) -> None:
    """Show a plan's totals and a sample of its messages with their reasons.

    Example: mailhygiene purge show P-20261123-1a2b3c
    """
    store = app(ctx).store
    summary = stored_summary(store, plan_ref)
    items = plan_items_sample(store, plan_ref, per_reason=sample)
    if as_json:
        print_json({**_summary_dict(summary), "sample": items})
        return
    _render_summary(summary)
    print_table(
        "Sample",
        ("folder", "uid", "received", "reason", "state"),
        [
            (i["folder"], i["uid"], fmt_time(i["internal_date"]), i["reason"], i["state"])
            for i in items
        ],
    )


@purge.command("approve")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--comment", default="", help="Why it is approved (kept in the audit log).")
@now_option
@json_option
@click.pass_context
@requires(Permission.PLAN_APPROVE)
def approve_command(
    ctx: click.Context, plan_ref: str, comment: str, now_text: str | None, as_json: bool
) -> None:
    """Approve a plan; the approval binds to the plan's exact content.

    Example: mailhygiene purge approve P-20261123-1a2b3c --comment "reviewed sample"
    """
    obj = app(ctx)
    state = approve_plan(
        obj.store,
        plan_ref,
        obj.policy,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        comment=comment,
    )
    if as_json:
        print_json(asdict(state))
        return
    click.echo(
        f"Plan {state.ref} approved by {', '.join(state.approvers)}; "
        f"run 'mailhygiene purge execute {state.ref}'."
    )


@purge.command("reject")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--comment", required=True, help="Why it is rejected.")
@now_option
@click.pass_context
@requires(Permission.PLAN_APPROVE)
def reject_command(ctx: click.Context, plan_ref: str, comment: str, now_text: str | None) -> None:
    """Reject a plan so it can never be executed.

    Example: mailhygiene purge reject P-20261123-1a2b3c --comment "wrong rule"
    """
    reject_plan(
        app(ctx).store, plan_ref, actor=acting_user(ctx), now=parse_now(now_text), comment=comment
    )
    click.echo(f"Plan {plan_ref} rejected.")


def run_execution(
    ctx: click.Context, plan_ref: str, now_text: str | None, show_progress: bool
) -> ExecutionReport:
    obj = app(ctx)
    summary = stored_summary(obj.store, plan_ref)
    with obj.server(summary.account) as server:
        if show_progress:
            with ExecuteBar() as bar:
                return execute_plan(
                    obj.store,
                    server,
                    obj.policy,
                    plan_ref,
                    actor=acting_user(ctx),
                    now=parse_now(now_text),
                    progress=bar,
                )
        return execute_plan(
            obj.store, server, obj.policy, plan_ref, actor=acting_user(ctx), now=parse_now(now_text)
        )


def _render_report(report: ExecutionReport, as_json: bool) -> None:
    if as_json:
        print_json(asdict(report))
        return
    click.echo(
        f"Plan {report.ref}: {report.status}; {report.done:,} done, "
        f"{sum(report.skipped.values()):,} skipped, {report.remaining:,} remaining "
        f"({report.seconds:.1f} s)."
    )
    for reason, count in report.reconciled.items():
        click.echo(f"  after an interruption: {count:,} {reason}")
    for reason, count in report.skipped.items():
        click.echo(f"  skipped {count:,}: {reason}")


@purge.command("execute")
@click.argument("plan_ref", metavar="PLAN")
@now_option
@json_option
@click.pass_context
@requires(Permission.PLAN_EXECUTE)
def execute_command(ctx: click.Context, plan_ref: str, now_text: str | None, as_json: bool) -> None:
    """Execute an approved plan: re-verify each message, then move or delete it.

    Safe to run again after an interruption: it resumes where it stopped.
    Example: mailhygiene purge execute P-20261123-1a2b3c
    """
    report = run_execution(ctx, plan_ref, now_text, show_progress=not as_json and interactive())
    _render_report(report, as_json)


@purge.command("resume")
@click.argument("plan_ref", metavar="PLAN", required=False)
@now_option
@json_option
@click.pass_context
@requires(Permission.PLAN_EXECUTE)
def resume_command(
    ctx: click.Context, plan_ref: str | None, now_text: str | None, as_json: bool
) -> None:
    """Finish plans whose execution was interrupted (all of them, or PLAN).

    Example: mailhygiene purge resume
    """
    refs = [plan_ref] if plan_ref else resumable_plans(app(ctx).store)
    if not refs:
        click.echo("No interrupted plan to resume.")
        return
    for ref in refs:
        _render_report(run_execution(ctx, ref, now_text, show_progress=False), as_json)


@click.group()
def quarantine() -> None:
    """Purged mail waiting out its grace period: list, restore, expunge."""


@quarantine.command("list")
@account_option
@click.option("--plan", "plan_ref", metavar="PLAN", help="Only what this plan moved.")
@json_option
@click.pass_context
@requires(Permission.READ)
def quarantine_list(
    ctx: click.Context, account_name: str | None, plan_ref: str | None, as_json: bool
) -> None:
    """List quarantined messages and when each will be deleted for good.

    Example: mailhygiene quarantine list --plan P-20261123-1a2b3c
    """
    obj = app(ctx)
    account = obj.settings.account(account_name)
    entries = quarantine_service.list_quarantine(obj.store, account=account.name, plan_ref=plan_ref)
    if as_json:
        print_json([asdict(e) for e in entries])
        return
    print_table(
        "Quarantine",
        ("id", "plan", "from folder", "moved", "deleted after", "size"),
        [
            (
                e.id,
                e.plan_ref,
                e.original_folder,
                fmt_time(e.moved_at),
                fmt_time(e.purge_after),
                e.size,
            )
            for e in entries
        ],
    )


@quarantine.command("restore")
@click.argument("entry_ids", nargs=-1, type=int, metavar="[ID]...")
@click.option("--plan", "plan_ref", metavar="PLAN", help="Restore everything this plan moved.")
@account_option
@now_option
@json_option
@click.pass_context
@requires(Permission.QUARANTINE_RESTORE)
def quarantine_restore(
    ctx: click.Context,
    entry_ids: tuple[int, ...],
    plan_ref: str | None,
    account_name: str | None,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Put quarantined messages back in the folders they came from.

    Example: mailhygiene quarantine restore --plan P-20261123-1a2b3c
    """
    if not entry_ids and not plan_ref:
        raise click.UsageError("name quarantine ids or --plan PLAN")
    obj = app(ctx)
    account = obj.settings.account(account_name)
    with obj.server(account.name) as server:
        report = quarantine_service.restore(
            obj.store,
            server,
            obj.policy,
            account=account.name,
            actor=acting_user(ctx),
            now=parse_now(now_text),
            entry_ids=list(entry_ids) or None,
            plan_ref=plan_ref,
        )
    if as_json:
        print_json(asdict(report))
        return
    click.echo(f"Restored {report.restored:,} message(s).")
    for reason, count in report.skipped.items():
        click.echo(f"  skipped {count:,}: {reason}")


@quarantine.command("expunge")
@account_option
@now_option
@json_option
@click.pass_context
@requires(Permission.QUARANTINE_EXPUNGE)
def quarantine_expunge(
    ctx: click.Context, account_name: str | None, now_text: str | None, as_json: bool
) -> None:
    """Delete for good what has waited out the grace period (re-verified first).

    Example: mailhygiene quarantine expunge
    """
    obj = app(ctx)
    account = obj.settings.account(account_name)
    with obj.server(account.name) as server:
        report = quarantine_service.expunge_due(
            obj.store,
            server,
            obj.policy,
            account=account.name,
            actor=acting_user(ctx),
            now=parse_now(now_text),
        )
    if as_json:
        print_json(asdict(report))
        return
    click.echo(f"Deleted {report.expunged:,} message(s) from quarantine for good.")
    for reason, count in report.skipped.items():
        click.echo(f"  kept {count:,}: {reason}")


COMMANDS = [purge, quarantine]
