"""``subject find|export|erase|requests|restrict|unrestrict|restrictions``: data-subject
requests (GDPR access, erasure and restriction of processing)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from mailhygiene.cli.auth import acting_user, requires
from mailhygiene.cli.context import app, parse_now
from mailhygiene.cli.output import fmt_time, json_option, print_json, print_pairs, print_table
from mailhygiene.restrictions import RestrictionView, lift, list_restrictions, restrict
from mailhygiene.roles import Permission
from mailhygiene.subjects import (
    ServerFor,
    SubjectServer,
    export,
    find,
    list_requests,
    plan_erasure,
)

now_option = click.option(
    "--now", "now_text", metavar="DATE", help="Act as if it were this instant (ISO 8601)."
)
plus_option = click.option(
    "--plus-addressing",
    is_flag=True,
    help="Treat sub-addresses as the same person: anna+shop@x is anna@x.",
)


@click.group("subject")
def subject() -> None:
    """Data-subject requests: find, export or erase one person's mail in every folder."""


def _servers(ctx: click.Context) -> ServerFor:
    obj = app(ctx)

    def server_for(account: str) -> AbstractContextManager[SubjectServer]:
        return obj.server(account)

    return server_for


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@subject.command("find")
@click.argument("email")
@click.option(
    "--also",
    "also",
    multiple=True,
    metavar="TEXT",
    help="Also find this name, phone or personnummer in subjects and sender names (repeatable).",
)
@click.option(
    "--server-search",
    is_flag=True,
    help="Search --also terms in full message text on the server (IMAP SEARCH TEXT).",
)
@plus_option
@click.option("--request-ref", default="", metavar="REF", help="The person's request reference.")
@now_option
@json_option
@click.pass_context
@requires(Permission.SUBJECT_FIND)
def find_command(
    ctx: click.Context,
    email: str,
    also: tuple[str, ...],
    server_search: bool,
    plus_addressing: bool,
    request_ref: str,
    now_text: str | None,
    as_json: bool,
) -> None:
    """List every message a person appears in, across all folders and accounts, with
    what keeps each one or when it goes. The lookup is recorded.

    Example: mailhygiene subject find anna.svensson@example.se --also "Anna Svensson"
    """
    if server_search and not also:
        raise click.UsageError("--server-search searches the --also terms; give at least one")
    obj = app(ctx)
    result = find(
        obj.store,
        obj.policy,
        email,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        also=also,
        plus_addressing=plus_addressing,
        server_for=_servers(ctx) if server_search else None,
        request_ref=request_ref,
    )
    if as_json:
        print_json(asdict(result))
        return
    _warn(result.warnings)
    print_table(
        f"{len(result.messages):,} message(s) for {result.email} (request {result.request})",
        ("id", "account/folder", "received", "from", "subject", "matched", "kept because / goes"),
        [
            (
                m.id,
                f"{m.account}/{m.folder}",
                fmt_time(m.received),
                m.sender,
                m.subject[:60],
                ", ".join(m.matched),
                m.retention,
            )
            for m in result.messages
        ],
    )


@subject.command("export")
@click.argument("email")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty directory for the export.",
)
@click.option("--request-ref", default="", metavar="REF", help="The person's request reference.")
@plus_option
@now_option
@json_option
@click.pass_context
@requires(Permission.SUBJECT_EXPORT)
def export_command(
    ctx: click.Context,
    email: str,
    out_dir: Path,
    request_ref: str,
    plus_addressing: bool,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Write a person's mail (.eml with attachments), an index (JSON, CSV) and a summary
    (HTML: what is stored, why, for how long) ready to send to them.

    Example: mailhygiene subject export anna.svensson@example.se --out ./anna --request-ref B-17
    """
    obj = app(ctx)
    result = export(
        obj.store,
        obj.policy,
        email,
        out_dir,
        server_for=_servers(ctx),
        actor=acting_user(ctx),
        now=parse_now(now_text),
        request_ref=request_ref,
        plus_addressing=plus_addressing,
    )
    if as_json:
        data: dict[str, Any] = asdict(result)
        data["files"] = len(result.files)
        print_json(data)
        return
    _warn(result.warnings)
    print_pairs(
        [
            ("request", result.request),
            ("exported", f"{len(result.exported):,} of {result.found:,} message(s)"),
            ("size", f"{result.total_bytes / 1_048_576:,.1f} MB"),
            ("directory", str(result.out_dir)),
            ("summary", str(result.out_dir / "summary.html")),
            ("due", fmt_time(result.due_at)),
        ]
    )
    for reason, count in result.skipped.items():
        click.echo(f"  not exported {count:,}: {reason}")


@subject.command("erase")
@click.argument("email")
@click.option("--request-ref", required=True, metavar="REF", help="The person's request reference.")
@plus_option
@now_option
@json_option
@click.pass_context
@requires(Permission.SUBJECT_ERASE)
def erase_command(
    ctx: click.Context,
    email: str,
    request_ref: str,
    plus_addressing: bool,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Plan the erasure of a person's mail; holds, open cases and legal retention
    (bookkeeping) keep theirs, and the letter says so. A second person approves it.

    Example: mailhygiene subject erase anna.svensson@example.se --request-ref B-17
    """
    obj = app(ctx)
    result = plan_erasure(
        obj.store,
        obj.policy,
        email,
        request_ref=request_ref,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        plus_addressing=plus_addressing,
    )
    if as_json:
        print_json(asdict(result))
        return
    click.echo(result.letter)
    click.echo("")
    click.echo("-" * 72)
    for summary in result.plans:
        click.echo(
            f"Plan {summary.ref} ({summary.account}): {summary.item_count:,} message(s). "
            f"Next: another manager or admin runs 'mailhygiene purge approve {summary.ref}', "
            f"then 'mailhygiene purge execute {summary.ref}'."
        )
    if result.plans:
        click.echo("Send the letter above once the plan(s) have been executed.")
    if result.kept:
        click.echo(
            f"{sum(group.messages for group in result.kept):,} message(s) must be kept; an "
            f"admin can restrict them: mailhygiene subject restrict {result.email} "
            '--basis "…" (hidden from staff, kept, reported).'
        )
    for older in result.superseded:
        click.echo(f"Request {older} is replaced by {result.request}.")
    click.echo(f"Request {result.request}; due {fmt_time(result.due_at)}.")


@subject.command("requests")
@click.option("--all", "include_closed", is_flag=True, help="Include answered requests.")
@now_option
@json_option
@click.pass_context
@requires(Permission.SUBJECT_FIND)
def requests_command(
    ctx: click.Context, include_closed: bool, now_text: str | None, as_json: bool
) -> None:
    """List open data-subject requests by due date (one month from each request).

    Example: mailhygiene subject requests --all
    """
    obj = app(ctx)
    views = list_requests(
        obj.store,
        now=parse_now(now_text),
        actor=acting_user(ctx),
        zone=obj.policy.zone,
        include_closed=include_closed,
    )
    if as_json:
        print_json([asdict(v) for v in views])
        return
    print_table(
        "Data-subject requests" if include_closed else "Open data-subject requests",
        ("request", "kind", "email", "their ref", "requested", "due", "days left", "status"),
        [
            (
                v.ref,
                v.kind,
                v.email,
                v.request_ref,
                fmt_time(v.requested_at),
                fmt_time(v.due_at),
                v.days_left if v.status == "open" else "",
                v.stage,
            )
            for v in views
        ],
    )


@subject.command("restrict")
@click.argument("email")
@click.option(
    "--basis",
    required=True,
    metavar="TEXT",
    help="The ground: the law that bars erasure, the claim, or the contested point.",
)
@click.option("--request-ref", default="", metavar="REF", help="The person's request reference.")
@plus_option
@now_option
@json_option
@click.pass_context
@requires(Permission.SUBJECT_RESTRICT)
def restrict_command(
    ctx: click.Context,
    email: str,
    basis: str,
    request_ref: str,
    plus_addressing: bool,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Restrict a person's mail (GDPR art. 18, or where art. 17(3) bars erasure): it is
    kept as retention says, but only admins find it in search and explain.

    Example: mailhygiene subject restrict anna@example.se --basis "bokföringslagen 7 kap."
    """
    obj = app(ctx)
    view = restrict(
        obj.store,
        email,
        basis=basis,
        request_ref=request_ref,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        plus_addressing=plus_addressing,
    )
    if as_json:
        print_json(asdict(view))
        return
    click.echo(
        f"Restriction {view.ref}: {view.email}'s mail ({view.messages:,} indexed message(s) "
        "now, and any that arrives) is hidden from search and explain for everyone but "
        "admins. Retention still applies to it."
    )


@subject.command("unrestrict")
@click.argument("restriction")
@click.option("--reason", required=True, metavar="TEXT", help="Why the restriction ends.")
@now_option
@json_option
@click.pass_context
@requires(Permission.SUBJECT_RESTRICT)
def unrestrict_command(
    ctx: click.Context, restriction: str, reason: str, now_text: str | None, as_json: bool
) -> None:
    """Lift a restriction: the person's mail shows in search again.

    Example: mailhygiene subject unrestrict RS-20261123-A1B2C3 --reason "claim settled"
    """
    view = lift(
        app(ctx).store,
        restriction,
        reason=reason,
        actor=acting_user(ctx),
        now=parse_now(now_text),
    )
    if as_json:
        print_json(asdict(view))
        return
    click.echo(f"Restriction {view.ref} lifted; {view.messages:,} message(s) show again.")


@subject.command("restrictions")
@click.option("--all", "include_lifted", is_flag=True, help="Include lifted restrictions.")
@json_option
@click.pass_context
@requires(Permission.SUBJECT_RESTRICT)
def restrictions_command(ctx: click.Context, include_lifted: bool, as_json: bool) -> None:
    """Report restrictions of processing: whose mail, on what ground, since when, and how
    many indexed messages each covers.

    Example: mailhygiene subject restrictions --all --json
    """
    views = list_restrictions(app(ctx).store, include_lifted=include_lifted)
    if as_json:
        print_json([asdict(v) for v in views])
        return
    print_table(
        "Restrictions of processing" + (" (all)" if include_lifted else " in force"),
        ("ref", "email", "basis", "their ref", "since", "by", "lifted", "messages"),
        [_restriction_row(v) for v in views],
    )


def _restriction_row(view: RestrictionView) -> tuple[object, ...]:
    return (
        view.ref,
        view.email + (" (+sub-addresses)" if view.plus_addressing else ""),
        view.basis,
        view.request_ref,
        fmt_time(view.placed_at),
        view.placed_by,
        fmt_time(view.lifted_at) if view.lifted_at else "",
        view.messages,
    )


COMMANDS = [subject]
