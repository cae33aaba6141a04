"""``rules history|diff|simulate|adopt``, ``hold release --preview`` rendering, and
``report disposition``.

The ``rules`` subcommands are attached to the ``rules`` group in ``policy_commands``;
``report`` is a group of its own.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mailhygiene.cli.auth import acting_user, requires
from mailhygiene.cli.context import app, parse_now
from mailhygiene.cli.output import fmt_time, json_option, print_json, print_pairs, print_table
from mailhygiene.config.rules import load_rules, read_rules_text
from mailhygiene.disposition import FORMATS, disposition_report, render_disposition
from mailhygiene.errors import InputError
from mailhygiene.governance import adopt_policy, diff_versions, policy_history
from mailhygiene.policy.compare import Effect, PolicyChange
from mailhygiene.roles import Permission
from mailhygiene.simulation import HoldReleasePreview, Shift, simulate_policy

now_option = click.option(
    "--now", "now_text", metavar="DATE", help="Act as if it were this instant (ISO 8601)."
)
account_option = click.option(
    "--account", "account_name", metavar="NAME", help="The account (default: the only one)."
)

_MARK = {Effect.EXTENDS: "+", Effect.WEAKENS: "!", Effect.NEUTRAL: "·"}


def _change_dict(change: PolicyChange) -> dict[str, str]:
    return {
        "subject": change.subject,
        "before": change.before,
        "after": change.after,
        "effect": change.effect.value,
        "why": change.why,
        "text": str(change),
    }


def _echo_changes(changes: tuple[PolicyChange, ...]) -> None:
    if not changes:
        click.echo("  no changes")
    for change in changes:
        click.echo(f"  {_MARK[change.effect]} {change}")


@click.command("history")
@json_option
@click.pass_context
@requires(Permission.READ)
def rules_history(ctx: click.Context, as_json: bool) -> None:
    """List the rules files plans ran under and which were adopted (the one in force
    is marked).

    Example: mailhygiene rules history
    """
    versions = policy_history(app(ctx).store)
    if as_json:
        print_json([asdict(v) for v in versions])
        return
    print_table(
        "Policy versions",
        ("version", "sha256", "first loaded by", "last adopted by", "lock", "in force"),
        [
            (
                v.id,
                v.hash[:10],
                f"{v.loaded_by}, {fmt_time(v.loaded_at)}",
                f"{v.adopted_by}, {fmt_time(v.adopted_at)}" if v.adopted else "",
                v.lock or "",
                "yes" if v.in_force else "",
            )
            for v in versions
        ],
    )


@click.command("diff")
@click.argument("old")
@click.argument("new", required=False)
@json_option
@click.pass_context
@requires(Permission.READ)
def rules_diff(ctx: click.Context, old: str, new: str | None, as_json: bool) -> None:
    """Show in words what changed from policy version OLD to NEW (default: the current
    rules file): per setting and rule, and whether each change extends or weakens.

    OLD and NEW are version numbers, 6+ digits of a hash, or 'adopted'.
    Example: mailhygiene rules diff adopted
    """
    obj = app(ctx)
    diff = diff_versions(obj.store, old, new if new is not None else obj.policy)
    if as_json:
        print_json(
            {
                "old": asdict(diff.old) if diff.old else None,
                "new": asdict(diff.new) if diff.new else None,
                "old_hash": diff.old_hash,
                "new_hash": diff.new_hash,
                "changes": [_change_dict(c) for c in diff.changes],
            }
        )
        return
    new_name = f"version {diff.new.id}" if diff.new else str(obj.settings.rules_path)
    old_name = f"version {diff.old.id}" if diff.old else old
    click.echo(
        f"From {old_name} (sha256 {diff.old_hash[:12]}) to {new_name} "
        f"(sha256 {diff.new_hash[:12]}):"
    )
    _echo_changes(diff.changes)
    if any(c.effect is Effect.WEAKENS for c in diff.changes):
        click.echo("(! = could let mail go sooner: refused while an extend-only lock is in force)")


def _shift_rows(shifts: list[Shift]) -> list[tuple[object, ...]]:
    return [(s.folder, s.reason, s.messages, s.bytes) for s in shifts]


def _sample_rows(shifts: list[Shift]) -> list[tuple[object, ...]]:
    return [
        (m.folder, m.uid, fmt_time(m.received), m.message_id, m.detail)
        for s in shifts
        for m in s.samples
    ]


@click.command("simulate")
@click.argument("rules_file", metavar="NEW_RULES.toml", type=click.Path(path_type=Path))
@account_option
@now_option
@click.option("--sample", default=5, show_default=True, help="Sample messages per group.")
@json_option
@click.pass_context
@requires(Permission.READ)
def rules_simulate(
    ctx: click.Context,
    rules_file: Path,
    account_name: str | None,
    now_text: str | None,
    sample: int,
    as_json: bool,
) -> None:
    """Show what NEW_RULES.toml would purge that the current rules keep, and the reverse,
    by folder and rule with samples — computed like a real plan; nothing is changed.

    Example: mailhygiene rules simulate rules-2027.toml --now 2027-01-01
    """
    obj = app(ctx)
    account = obj.settings.account(account_name)
    candidate = load_rules(rules_file)
    result = simulate_policy(
        obj.store,
        obj.policy,
        candidate,
        account=account.name,
        now=parse_now(now_text),
        actor=acting_user(ctx),
        samples=sample,
    )
    if as_json:
        data: dict[str, Any] = asdict(result)
        data["changes"] = [_change_dict(c) for c in result.changes]
        data["lock_objections"] = [_change_dict(c) for c in result.lock_objections]
        print_json(data)
        return
    print_pairs(
        [
            ("account", result.account),
            ("at", fmt_time(result.now)),
            ("current rules", f"{obj.settings.rules_path} (sha256 {result.current_hash[:12]})"),
            ("new rules", f"{rules_file} (sha256 {result.candidate_hash[:12]})"),
            (
                "would purge",
                f"{result.current.item_count:,} now → {result.candidate.item_count:,} "
                "under the new rules",
            ),
            ("plan content hash", result.candidate.content_hash[:16] + "…"),
        ]
    )
    click.echo("Changes:")
    _echo_changes(result.changes)
    if result.newly_purged:
        print_table(
            "Would be purged under the new rules (kept now)",
            ("folder", "rule", "messages", "bytes"),
            _shift_rows(result.newly_purged),
        )
        print_table(
            "Samples",
            ("folder", "uid", "received", "message-id", "why"),
            _sample_rows(result.newly_purged),
        )
    if result.no_longer_purged:
        print_table(
            "Would be kept under the new rules (purged now)",
            ("folder", "purged now by", "messages", "bytes"),
            _shift_rows(result.no_longer_purged),
        )
        print_table(
            "Samples",
            ("folder", "uid", "received", "message-id", "why purged now"),
            _sample_rows(result.no_longer_purged),
        )
    if not result.newly_purged and not result.no_longer_purged:
        click.echo("The new rules purge exactly the same messages at this instant.")
    if result.reason_changed:
        click.echo(f"{result.reason_changed:,} message(s) purged by both, for another reason.")
    if result.lock_objections:
        click.echo("Adopting this file would be refused by the extend-only lock:")
        _echo_changes(result.lock_objections)


@click.command("adopt")
@now_option
@json_option
@click.pass_context
@requires(Permission.RULES_MANAGE)
def rules_adopt(ctx: click.Context, now_text: str | None, as_json: bool) -> None:
    """Adopt the current rules file as the policy in force (audited). Under an
    extend-only lock, a file that would let any mail go sooner is refused (exit 3).

    Example: mailhygiene rules adopt
    """
    obj = app(ctx)
    adoption = adopt_policy(
        obj.store,
        obj.policy,
        read_rules_text(obj.settings.rules_path),
        actor=acting_user(ctx),
        now=parse_now(now_text),
    )
    if as_json:
        print_json(
            {
                "version": asdict(adoption.version),
                "previous": asdict(adoption.previous) if adoption.previous else None,
                "already_in_force": adoption.already_in_force,
                "changes": [_change_dict(c) for c in adoption.changes],
            }
        )
        return
    version = adoption.version
    if adoption.already_in_force:
        click.echo(f"Version {version.id} (sha256 {version.hash[:12]}) is already in force.")
        return
    lock = f"; lock: {version.lock}" if version.lock else ""
    click.echo(f"Adopted {obj.settings.rules_path} as version {version.id}{lock}.")
    if adoption.previous is not None:
        click.echo(f"Changes from version {adoption.previous.id}:")
        _echo_changes(adoption.changes)


RULES_COMMANDS = [rules_history, rules_diff, rules_simulate, rules_adopt]


def render_release_preview(preview: HoldReleasePreview, as_json: bool) -> None:
    """``hold release NAME --preview`` output."""
    if as_json:
        print_json(asdict(preview))
        return
    click.echo(
        f"Releasing hold {preview.hold} (account {preview.account}, at "
        f"{fmt_time(preview.now)}) would affect {preview.covered:,} message(s): "
        f"{preview.purgeable_now:,} purgeable at the next plan (after its approval), "
        f"{preview.purgeable_later:,} later, {preview.still_kept:,} still kept for "
        "another reason. Nothing is deleted by the release itself."
    )
    if preview.groups:
        print_table(
            "After the release",
            ("folder", "outcome", "messages", "bytes", "earliest"),
            [
                (g.folder, g.outcome, g.messages, g.bytes, fmt_time(g.earliest))
                for g in preview.groups
            ],
        )


def _date(text: str, option: str) -> datetime:
    try:
        return parse_now(text)
    except InputError:
        raise InputError(f"{option} {text!r} is not a date; use ISO 8601 like 2026-01-01") from None


@click.group("report")
def report() -> None:
    """Reports for auditors."""


@report.command("disposition")
@click.option("--since", "since_text", required=True, metavar="DATE", help="From (ISO 8601).")
@click.option("--until", "until_text", metavar="DATE", help="Up to, not including (ISO 8601).")
@click.option("--account", "account_name", metavar="NAME", help="Only this account.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="csv (spreadsheets), json, or html (a page to hand over).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.pass_context
@requires(Permission.AUDIT_READ)
def report_disposition(
    ctx: click.Context,
    since_text: str,
    until_text: str | None,
    account_name: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Proof of disposition: every message deleted for good since DATE — rule, policy
    version, plan, approvers, time — without content or addresses.

    Example: mailhygiene report disposition --since 2026-01-01 --format html -o 2026.html
    """
    since = _date(since_text, "--since")
    until = _date(until_text, "--until") if until_text else None
    rows = disposition_report(app(ctx).store, since=since, until=until, account=account_name)
    text = render_disposition(rows, fmt, since=since, until=until, generated_at=parse_now(None))
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {len(rows):,} tombstone(s) to {output}.", err=True)
