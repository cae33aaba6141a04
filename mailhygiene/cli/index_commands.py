"""``sync`` and ``status``: bring the index up to date and show what it holds."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import click

from mailhygiene.cases.mirror import mirror_keywords
from mailhygiene.cases.service import link_after_sync
from mailhygiene.cli.auth import acting_user, requires
from mailhygiene.cli.context import app, parse_now
from mailhygiene.cli.output import fmt_time, interactive, json_option, print_json, print_table
from mailhygiene.cli.progress import SyncBar
from mailhygiene.config.secrets import resolve_password
from mailhygiene.config.settings import AccountSettings
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, SyncResult, sync_account
from mailhygiene.reports import index_status
from mailhygiene.roles import Permission


def sync_one(
    ctx: click.Context,
    account: AccountSettings,
    folders: tuple[str, ...],
    now_text: str | None,
    show_progress: bool,
) -> SyncResult:
    obj = app(ctx)
    request = SyncRequest(
        account=account.name,
        host=account.host,
        username=account.username,
        include=account.folders,
        exclude=account.exclude,
        only_folders=folders,
    )
    now = parse_now(now_text)
    policy = obj.policy if obj.settings.rules_path.exists() else None  # a bad file fails first
    with ImapMailServer(account, resolve_password(account)) as server:
        bar = SyncBar() if show_progress else None
        with bar if bar is not None else nullcontext():
            result = sync_account(obj.store, server, request, now=now, progress=bar)
        if policy is not None:
            # New mail joins its thread, threads with case numbers or case keywords are
            # linked, and linked mail gets the case keyword on the server (issue #4).
            result.threads_linked = link_after_sync(
                obj.store, policy, account.name, now, acting_user(ctx)
            )
            mirror_keywords(
                obj.store, server, policy, account.name, now=now, actor=acting_user(ctx)
            )
    return result


@click.command()
@requires(Permission.SYNC)
@click.option("--account", "account_name", metavar="NAME", help="Only this account (default: all).")
@click.option(
    "--folder",
    "folders",
    multiple=True,
    metavar="FOLDER",
    help="Only this folder; repeat for several (default: the account's folders setting).",
)
@click.option(
    "--now", "now_text", metavar="DATE", help="Act as if it were this instant (ISO 8601)."
)
@json_option
@click.pass_context
def sync(
    ctx: click.Context,
    account_name: str | None,
    folders: tuple[str, ...],
    now_text: str | None,
    as_json: bool,
) -> None:
    """Index new and changed mail from the IMAP server.

    The first run fetches every selected folder; later runs fetch only what changed
    (new mail, flag and keyword changes, deleted mail). An interrupted sync resumes.

    Example: mailhygiene sync --account support --folder INBOX
    """
    settings = app(ctx).settings
    accounts = (
        [settings.account(account_name)] if account_name else list(settings.accounts.values())
    )
    if not accounts:
        raise click.UsageError("no [accounts.NAME] table in the settings file")
    results = [
        sync_one(ctx, account, folders, now_text, show_progress=not as_json and interactive())
        for account in accounts
    ]
    if as_json:
        print_json([_result_dict(result) for result in results])
        return
    for result in results:
        rows = [
            (
                f.folder,
                f.new,
                f.flags_changed,
                f.expunged,
                "yes" if f.reindexed else "",
                sum(f.problems.values()),
                f"{f.seconds:.2f}s",
            )
            for f in result.folders
        ]
        print_table(
            f"Account {result.account}",
            ("folder", "new", "flags changed", "gone", "re-indexed", "malformed", "time"),
            rows,
        )
        if result.threads_linked:
            click.echo(f"{result.threads_linked:,} thread(s) newly linked to complaint cases.")
        if result.problems:
            summary = ", ".join(
                f"{kind} {count}" for kind, count in sorted(result.problems.items())
            )
            click.echo(f"Indexed with problems (recorded, not skipped): {summary}")
        for name in result.dropped_folders:
            click.echo(f"Folder {name!r} no longer exists on the server; forgotten.")


def _result_dict(result: SyncResult) -> dict[str, Any]:
    return {
        "account": result.account,
        "new": result.new,
        "threads_linked": result.threads_linked,
        "problems": result.problems,
        "dropped_folders": result.dropped_folders,
        "folders": [
            {
                "folder": f.folder,
                "new": f.new,
                "flags_changed": f.flags_changed,
                "expunged": f.expunged,
                "reindexed": f.reindexed,
                "problems": f.problems,
                "seconds": round(f.seconds, 3),
            }
            for f in result.folders
        ],
    }


@click.command()
@requires(Permission.READ)
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show accounts, folders, message counts, last sync and server capabilities.

    Example: mailhygiene status --json
    """
    obj = app(ctx)
    report = index_status(obj.store)
    if as_json:
        print_json(report)
        return
    for account in report["accounts"]:
        click.echo(
            f"Account {account['name']} — {account['username']} on {account['host']}, "
            f"last sync {fmt_time(account['last_sync_at'])}"
        )
        click.echo(f"  capabilities: {account['capabilities'] or 'unknown (never synced)'}")
        print_table(
            None,
            ("folder", "messages", "size", "UIDVALIDITY", "last sync"),
            [
                (
                    f["name"],
                    f["messages"],
                    _human_size(f["bytes"]),
                    f["uidvalidity"],
                    fmt_time(f["last_sync_at"]),
                )
                for f in account["folders"]
            ],
        )
    if not report["accounts"]:
        click.echo("The index is empty: run 'mailhygiene sync' first.")


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


COMMANDS = [sync, status]
