"""``case`` (open, close, reopen, rename, list, show, review, link, mirror), ``tag``, ``untag``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any

import click

from mailhygiene.cases import service
from mailhygiene.cases.linking import LinkResult, ReviewItem
from mailhygiene.cases.mirror import KeywordServer, MirrorResult, ServerFor
from mailhygiene.cli.auth import acting_user, requires
from mailhygiene.cli.context import AppContext, app, parse_now
from mailhygiene.cli.output import fmt_time, json_option, print_json, print_pairs, print_table
from mailhygiene.roles import Permission

now_option = click.option(
    "--now", "now_text", metavar="DATE", help="Act as if it were this instant (ISO 8601)."
)


@click.group()
def case() -> None:
    """Complaint cases (reklamationsärenden): their conversations are kept while handled."""


@case.command("open")
@requires(Permission.CASE_MANAGE)
@click.argument("ref")
@click.option("--title", default="", help="What the case is about (shown in lists).")
@now_option
@json_option
@click.pass_context
def open_command(
    ctx: click.Context, ref: str, title: str, now_text: str | None, as_json: bool
) -> None:
    """Open a case; mail whose subject already names REF is linked at once.

    Example: mailhygiene case open REK-2025-0042 --title "Trasig leverans, Anna Svensson"
    """
    obj = app(ctx)
    view = service.open_case(
        obj.store, obj.policy, ref=ref, title=title, actor=acting_user(ctx), now=parse_now(now_text)
    )
    _print_case(view, as_json, f"Opened {view.ref}.")


@case.command("close")
@requires(Permission.CASE_MANAGE)
@click.argument("ref")
@click.option("--reason", default="", help="Why the case is closed (kept in the audit log).")
@now_option
@json_option
@click.pass_context
def close_command(
    ctx: click.Context, ref: str, reason: str, now_text: str | None, as_json: bool
) -> None:
    """Close a case; its mail is kept for the configured period after closing.

    Example: mailhygiene case close REK-2025-0042 --reason "ersättning utbetald"
    """
    obj = app(ctx)
    view = service.close_case(
        obj.store,
        obj.policy,
        ref=ref,
        reason=reason,
        actor=acting_user(ctx),
        now=parse_now(now_text),
    )
    until = fmt_time(view.protected_until) if view.protected_until else "indefinitely"
    _print_case(view, as_json, f"Closed {view.ref}; its mail is kept until {until}.")


@case.command("reopen")
@requires(Permission.CASE_MANAGE)
@click.argument("ref")
@now_option
@json_option
@click.pass_context
def reopen_command(ctx: click.Context, ref: str, now_text: str | None, as_json: bool) -> None:
    """Reopen a closed case; its mail is kept again until it is closed.

    Example: mailhygiene case reopen REK-2025-0042
    """
    obj = app(ctx)
    view = service.reopen_case(
        obj.store, obj.policy, ref=ref, actor=acting_user(ctx), now=parse_now(now_text)
    )
    _print_case(view, as_json, f"Reopened {view.ref}.")


@case.command("rename")
@requires(Permission.CASE_MANAGE)
@click.argument("ref")
@click.argument("new_ref", metavar="NEW_REF")
@now_option
@json_option
@click.pass_context
def rename_command(
    ctx: click.Context, ref: str, new_ref: str, now_text: str | None, as_json: bool
) -> None:
    """Give a case (usually an UNTRIAGED-… one) its real reference; threads move with it.

    Example: mailhygiene case rename UNTRIAGED-20261123-1 REK-2025-0042
    """
    obj = app(ctx)
    view = service.rename_case(
        obj.store,
        obj.policy,
        ref=ref,
        new_ref=new_ref,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        server_for=_server_for(obj),
    )
    _print_case(view, as_json, f"{ref.upper()} is now {view.ref}.")


@case.command("list")
@requires(Permission.READ)
@click.option("--open", "status", flag_value="open", help="Only open cases.")
@click.option("--closed", "status", flag_value="closed", help="Only closed cases.")
@json_option
@click.pass_context
def list_command(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List cases, newest first, with their threads and messages.

    Example: mailhygiene case list --open
    """
    obj = app(ctx)
    views = service.list_cases(obj.store, obj.policy, status=status)
    if as_json:
        print_json([asdict(v) for v in views])
        return
    if not views:
        click.echo("No cases.")
        return
    print_table(
        "Cases",
        ("case", "status", "title", "threads", "messages", "opened", "last mail", "kept until"),
        [
            (
                v.ref,
                v.status,
                v.title,
                v.threads,
                v.messages,
                fmt_time(v.opened_at),
                fmt_time(v.last_activity),
                "while open" if v.status == "open" else fmt_time(v.protected_until),
            )
            for v in views
        ],
    )


@case.command("show")
@requires(Permission.READ)
@click.argument("ref")
@json_option
@click.pass_context
def show_command(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a case: its threads (who linked them, how), messages in every folder, and
    when its mail becomes purgeable.

    Example: mailhygiene case show REK-2025-0042 --json
    """
    obj = app(ctx)
    detail = service.show_case(obj.store, obj.policy, ref=ref)
    if as_json:
        print_json(asdict(detail))
        return
    view = detail.case
    print_pairs(_case_pairs(view, obj.policy.case_keep_after_close.describe()))
    if detail.folders:
        click.echo("Folders: " + ", ".join(f"{k} {n}" for k, n in detail.folders.items()))
    print_table(
        "Threads",
        ("thread", "messages", "how", "linked", "by", "note"),
        [
            (t.thread_id, t.messages, t.how, fmt_time(t.linked_at), t.linked_by, t.note)
            for t in detail.threads
        ],
    )
    if detail.history:
        print_table(
            "Unlinked",
            ("thread", "how", "linked", "unlinked", "by", "reason"),
            [
                (
                    t.thread_id,
                    t.how,
                    fmt_time(t.linked_at),
                    fmt_time(t.unlinked_at),
                    t.unlinked_by,
                    t.unlink_reason,
                )
                for t in detail.history
            ],
        )
    print_table(
        "Messages",
        ("id", "account", "folder", "date", "from", "subject", "keyword"),
        [
            (
                m.row_id,
                m.account,
                m.folder,
                fmt_time(m.date),
                m.from_addr,
                m.subject,
                "yes" if m.has_keyword else "no",
            )
            for m in detail.messages
        ],
    )


@case.command("review")
@requires(Permission.READ)
@json_option
@click.pass_context
def review_command(ctx: click.Context, as_json: bool) -> None:
    """List what needs a person: untriaged cases, case keywords removed or set in a mail
    client against a person's decision, keywords naming no case.

    Example: mailhygiene case review
    """
    obj = app(ctx)
    report = service.review(obj.store, obj.policy)
    if as_json:
        print_json([_review_dict(item) for item in report.items])
        return
    if not report.items:
        click.echo("Nothing to review.")
        return
    _print_review(report.items)


@case.command("link")
@requires(Permission.TAG)
@click.option("--account", "account_name", metavar="NAME", help="The account (default: all).")
@click.option(
    "--mirror/--no-mirror",
    default=True,
    show_default=True,
    help="Also set the case keyword on the server.",
)
@now_option
@json_option
@click.pass_context
def link_command(
    ctx: click.Context, account_name: str | None, mirror: bool, now_text: str | None, as_json: bool
) -> None:
    """Thread newly synced mail and link it to cases (by case number and client keyword),
    then mirror the per-case keywords to the server. The scheduled run does this after a
    sync.

    Example: mailhygiene case link --account support
    """
    obj = app(ctx)
    now, actor = parse_now(now_text), acting_user(ctx)
    accounts = (
        [obj.settings.account(account_name)]
        if account_name
        else list(obj.settings.accounts.values())
    )
    if not accounts:
        raise click.UsageError("no [accounts.NAME] table in the settings file")
    output: list[dict[str, Any]] = []
    for account in accounts:
        linked = service.link_new_mail(obj.store, obj.policy, account.name, now=now, actor=actor)
        mirrored: MirrorResult | None = None
        if mirror:
            with obj.server(account.name) as server:
                mirrored = service.mirror_keywords(
                    obj.store, server, obj.policy, account.name, now=now, actor=actor
                )
        output.append(
            {"link": _link_dict(linked), "mirror": asdict(mirrored) if mirrored else None}
        )
        if not as_json:
            _print_link(linked, mirrored)
    if as_json:
        print_json(output)


@case.command("mirror")
@requires(Permission.TAG)
@click.option("--account", "account_name", metavar="NAME", help="The account (default: all).")
@now_option
@json_option
@click.pass_context
def mirror_command(
    ctx: click.Context, account_name: str | None, now_text: str | None, as_json: bool
) -> None:
    """Set each open case's keyword ($Reklamation_REF) on the server on every message of
    its threads, so staff see in their mail client which case protects the mail.

    Example: mailhygiene case mirror --account support
    """
    obj = app(ctx)
    now, actor = parse_now(now_text), acting_user(ctx)
    accounts = (
        [obj.settings.account(account_name)]
        if account_name
        else list(obj.settings.accounts.values())
    )
    results = []
    for account in accounts:
        with obj.server(account.name) as server:
            results.append(
                service.mirror_keywords(
                    obj.store, server, obj.policy, account.name, now=now, actor=actor
                )
            )
    if as_json:
        print_json([asdict(r) for r in results])
        return
    for result in results:
        _print_mirror(result)


@click.command("tag")
@requires(Permission.TAG)
@click.argument("message")
@click.option("--case", "ref", required=True, metavar="REF", help="The case to link to.")
@click.option("--yes", is_flag=True, help="Go ahead when the selection is large.")
@now_option
@json_option
@click.pass_context
def tag_command(
    ctx: click.Context, message: str, ref: str, yes: bool, now_text: str | None, as_json: bool
) -> None:
    """Link the whole conversation of MESSAGE to a case.

    MESSAGE is a Message-ID (<id@host> or id@host: every copy), an index id (a number, as
    'mailhygiene search' shows), or a search query. Mail that joins the conversation later,
    in any folder, is linked automatically. More than 50 messages or threads need --yes.

    Example: mailhygiene tag "<CAF3x9@mail.example.se>" --case REK-2025-0042
    """
    obj = app(ctx)
    result = service.tag(
        obj.store,
        obj.policy,
        target=message,
        ref=ref,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        confirmed=yes,
    )
    if as_json:
        print_json(asdict(result))
        return
    selection = result.selection
    click.echo(
        f"Linked {len(result.linked)} thread(s) to {result.ref} "
        f"({selection.thread_messages} message(s)); already linked: "
        f"{len(result.already_linked)}. Selected by {selection.kind}: "
        f"{len(selection.message_rows)} message(s)."
    )


@click.command("untag")
@requires(Permission.TAG)
@click.argument("message")
@click.option("--case", "ref", required=True, metavar="REF", help="The case to unlink from.")
@click.option("--reason", required=True, help="Why (kept with the link's history).")
@click.option(
    "--keep-keyword",
    is_flag=True,
    help="Do not remove the case keyword on the server (e.g. it is unreachable); remove it "
    "in a mail client instead.",
)
@click.option("--yes", is_flag=True, help="Go ahead when the selection is large.")
@now_option
@json_option
@click.pass_context
def untag_command(
    ctx: click.Context,
    message: str,
    ref: str,
    reason: str,
    keep_keyword: bool,
    yes: bool,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Unlink the conversation of MESSAGE from a case, removing the case keyword mailhygiene
    set on its mail (unless another open case still holds it).

    Example: mailhygiene untag 4711 --case REK-2025-0042 --reason "fel ärende"
    """
    obj = app(ctx)
    result = service.untag(
        obj.store,
        obj.policy,
        target=message,
        ref=ref,
        reason=reason,
        actor=acting_user(ctx),
        now=parse_now(now_text),
        server_for=None if keep_keyword else _server_for(obj),
        confirmed=yes,
    )
    if as_json:
        print_json(asdict(result))
        return
    click.echo(f"Unlinked {len(result.unlinked)} thread(s) from {result.ref}.")
    if result.keywords_kept:
        click.echo("The case keyword is still on the server; remove it in a mail client.")
    else:
        click.echo(f"Case keyword removed from {result.keywords_removed_from} message(s).")


# -- rendering -------------------------------------------------------------------------


def _case_pairs(view: service.CaseView, keep: str) -> list[tuple[str, object]]:
    if view.status == "open":
        purgeable = f"not while open; {keep} after closing, then the normal rules"
    else:
        purgeable = (
            f"from {fmt_time(view.protected_until)} as far as the case is concerned "
            "(other rules may keep it longer)"
        )
    return [
        ("case", view.ref),
        ("title", view.title),
        ("status", view.status),
        ("opened", f"{fmt_time(view.opened_at)} by {view.opened_by} ({view.created_how})"),
        (
            "closed",
            f"{fmt_time(view.closed_at)} by {view.closed_by}: {view.close_reason or ''}"
            if view.closed_at
            else "—",
        ),
        ("threads", view.threads),
        ("messages", view.messages),
        ("last mail", fmt_time(view.last_activity)),
        ("purgeable", purgeable),
    ]


def _print_case(view: service.CaseView, as_json: bool, line: str) -> None:
    if as_json:
        print_json(asdict(view))
        return
    click.echo(line)
    print_pairs(_case_pairs(view, ""))


def _review_dict(item: ReviewItem) -> dict[str, Any]:
    return {
        "kind": item.kind.value,
        "thread": item.thread_id,
        "case": item.case_ref,
        "messages": list(item.message_rows),
        "detail": item.detail,
    }


def _print_review(items: list[ReviewItem]) -> None:
    print_table(
        "To review",
        ("kind", "case", "thread", "messages", "what to do"),
        [
            (i.kind.value, i.case_ref or "", i.thread_id, len(i.message_rows), i.detail)
            for i in items
        ],
    )


def _link_dict(result: LinkResult) -> dict[str, Any]:
    data = asdict(result)
    data["review"] = [_review_dict(item) for item in result.review]
    return data


def _print_link(result: LinkResult, mirrored: MirrorResult | None) -> None:
    click.echo(
        f"Account {result.account}: {result.threaded} message(s) threaded, "
        f"{result.merged_threads} thread(s) merged, {result.linked} link(s) made "
        f"({', '.join(f'{k} {v}' for k, v in sorted(result.by_how.items())) or 'none'}); "
        f"{len(result.created_cases)} case(s) created."
    )
    if result.review:
        _print_review(result.review)
    if mirrored is not None:
        _print_mirror(mirrored)


def _server_for(obj: AppContext) -> ServerFor:
    """Connections to the settings' accounts, for services that change keywords."""

    def server_for(account: str) -> AbstractContextManager[KeywordServer]:
        return obj.server(account)

    return server_for


def _print_mirror(result: MirrorResult) -> None:
    click.echo(
        f"Account {result.account}: {result.keyword} set on {result.marked} message(s)"
        + (f"; {result.pending} pending (retried next time)" if result.pending else "")
        + "."
    )
    for folder in result.folders:
        if folder.problem:
            click.echo(f"  {folder.folder} ({folder.keyword}): {folder.problem}")


COMMANDS = [case, tag_command, untag_command]
