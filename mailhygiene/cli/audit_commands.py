"""``audit log | verify | anchor``: read the audit log and prove it has not been altered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mailhygiene.audit import log as audit_log
from mailhygiene.audit.events import (
    AuditEntry,
    AuditTag,
    ChainHead,
    VerifyResult,
    canonical_json,
    tag_sources,
    utc_iso,
)
from mailhygiene.cli.auth import requires
from mailhygiene.cli.context import app
from mailhygiene.cli.output import json_option, print_json, print_pairs, print_table
from mailhygiene.errors import InputError, NotFoundError, SafetyRefusal
from mailhygiene.roles import Permission


@click.group()
def audit() -> None:
    """Read the tamper-evident audit log, verify its hash chain, export its anchor.

    Every change (cases, holds, plans, approvals, purges, users) and every refused
    command is recorded with who, when and what. Each entry is hashed together with
    the one before it, so editing or deleting an entry breaks the chain.

    Example: mailhygiene audit log --tag plan --since 2026-03-01
    """


@audit.command("log")
@requires(Permission.AUDIT_READ)
@click.option(
    "--since",
    "since_text",
    metavar="DATE",
    help="Only entries at or after this instant (ISO 8601).",
)
@click.option("--actor", metavar="NAME", help="Only entries by this user.")
@click.option(
    "--tag",
    metavar="TAG",
    help="Only this tag (plan:approve) or all tags of a source (plan).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="At most this many entries, newest first.",
)
@json_option
@click.pass_context
def log(
    ctx: click.Context,
    since_text: str | None,
    actor: str | None,
    tag: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show audit entries, newest first.

    Example: mailhygiene audit log --actor anna.berg --tag user --limit 20
    """
    since = _parse_instant(since_text, "--since") if since_text else None
    if tag is not None and tag not in {t.value for t in AuditTag} and tag not in tag_sources():
        # a misspelt tag would silently show nothing; name the valid ones instead
        sources = ", ".join(sorted(tag_sources()))
        raise click.BadParameter(
            f"{tag!r} is neither a tag (like plan:approve) nor a source ({sources})",
            param_hint="--tag",
        )
    entries = audit_log.query(app(ctx).store, since=since, actor=actor, tag=tag, limit=limit)
    if as_json:
        print_json([_entry_dict(entry) for entry in entries])
        return
    if not entries:
        click.echo("No audit entries match.")
        return
    print_table(
        None,
        ("seq", "at (UTC)", "actor", "tag", "subject", "details"),
        [
            (
                entry.seq,
                entry.at.strftime("%Y-%m-%d %H:%M:%S"),
                entry.actor,
                entry.tag,
                entry.subject,
                canonical_json(entry.data),
            )
            for entry in entries
        ],
    )


@audit.command("verify")
@requires(Permission.AUDIT_READ)
@click.option(
    "--anchor",
    "anchor_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check against an anchor saved earlier with 'audit anchor --out'.",
)
@json_option
@click.pass_context
def verify(ctx: click.Context, anchor_path: Path | None, as_json: bool) -> None:
    """Recompute the hash chain; exit 3 naming the first entry that was altered.

    Finds edited, deleted, swapped and reordered entries. Entries removed from the
    end, or a chain rebuilt after an edit, are found only with --anchor.

    Example: mailhygiene audit verify --anchor /mnt/safe/mailhygiene-anchor.json
    """
    anchor = _read_anchor(anchor_path) if anchor_path is not None else None
    result = audit_log.verify(app(ctx).store, anchor=anchor)
    if as_json:
        print_json(_verify_dict(result))
    elif result.ok:
        head = result.head
        tail = f", head seq {head.seq} hash {head.hash}" if head is not None else ""
        anchored = f", matches the anchor at seq {anchor.seq}" if anchor is not None else ""
        click.echo(f"Audit log intact: {result.count} entries{tail}{anchored}.")
    else:
        click.echo(f"{result.count} entries before the break are intact.")
    if not result.ok:
        # why: a broken chain means the record of who changed or deleted what is untrustworthy
        raise SafetyRefusal(
            f"the audit log is broken at seq {result.first_bad_seq}: {result.problem}"
        )


@audit.command("anchor")
@requires(Permission.AUDIT_READ)
@click.option(
    "--out",
    "out_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the anchor to FILE (JSON); keep it away from the database.",
)
@json_option
@click.pass_context
def anchor(ctx: click.Context, out_path: Path | None, as_json: bool) -> None:
    """Print the chain head (seq, hash, time) to keep somewhere safe.

    A later 'audit verify --anchor FILE' proves nothing up to that entry changed
    since, even if someone rewrote the whole chain after it.

    Example: mailhygiene audit anchor --out /mnt/safe/mailhygiene-anchor.json
    """
    head = audit_log.head(app(ctx).store)
    if head is None:
        raise NotFoundError("the audit log is empty; there is nothing to anchor yet")
    data = _head_dict(head)
    if out_path is not None:
        try:
            out_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write the anchor to {out_path}: {exc.strerror}") from None
    if as_json:
        print_json(data)
        return
    print_pairs([("seq", head.seq), ("hash", head.hash), ("at", data["at"])])
    if out_path is not None:
        click.echo(f"Written to {out_path}.")


def _parse_instant(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use ISO 8601 like 2026-03-01 or 2026-03-01T12:00+01:00",
            param_hint=option,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _read_anchor(path: Path) -> ChainHead:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        head = ChainHead(int(raw["seq"]), str(raw["hash"]), datetime.fromisoformat(raw["at"]))
    except OSError as exc:
        raise InputError(f"cannot read the anchor {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{path} is not an anchor written by 'mailhygiene audit anchor --out' "
            '(expected JSON with "seq", "hash" and "at")'
        ) from None
    if head.seq < 1 or len(head.hash) != 64:
        raise InputError(f"{path}: the anchor's seq or hash is not valid")
    return head


def _head_dict(head: ChainHead) -> dict[str, Any]:
    return {"seq": head.seq, "hash": head.hash, "at": utc_iso(head.at)}


def _entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": utc_iso(entry.at),
        "actor": entry.actor,
        "tag": entry.tag,
        "subject": entry.subject,
        "data": dict(entry.data),
    }


def _verify_dict(result: VerifyResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "count": result.count,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
        "head": _head_dict(result.head) if result.head is not None else None,
    }


COMMANDS = [audit]
