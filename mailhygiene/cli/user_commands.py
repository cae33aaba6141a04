"""``user add | list | disable | enable | role | passwd``: who may use mailhygiene, with which
role, and the password for the web page."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mailhygiene.cli.auth import acting_user, requires
from mailhygiene.cli.context import app
from mailhygiene.cli.output import fmt_time, json_option, print_json, print_table
from mailhygiene.errors import InputError
from mailhygiene.roles import Permission, Role
from mailhygiene.users import (
    UserView,
    add_user,
    check_password_strength,
    disable_user,
    enable_user,
    list_users,
    set_password,
    set_role,
)

ROLE_CHOICE = click.Choice([role.value for role in Role])


@click.group()
def user() -> None:
    """Manage who may use mailhygiene and with which role.

    \b
    support    read, sync, complaint cases, tags
    manager    support + purge plans, approvals, execution, quarantine restore,
               the audit log, finding a data subject's mail
    admin      everything, including users and erasure
    scheduler  the service account of 'mailhygiene run'

    On a new database nobody may do anything until the first admin is added.

    Example: mailhygiene user add anna.berg --role manager
    """


@user.command("add")
@requires(Permission.USER_MANAGE, bootstrap=True)
@click.argument("name")
@click.option("--role", "role_name", type=ROLE_CHOICE, required=True, help="The role NAME gets.")
@json_option
@click.pass_context
def add(ctx: click.Context, name: str, role_name: str, as_json: bool) -> None:
    """Allow NAME (their login name) to use mailhygiene with a role.

    On a new database the first user must be an admin; whoever runs that first
    command creates them, and it is recorded in the audit log as the bootstrap.

    Example: mailhygiene user add anna.berg --role support
    """
    view = add_user(
        app(ctx).store,
        name=name,
        role=Role(role_name),
        actor=acting_user(ctx),
        now=datetime.now(UTC),
    )
    _show(view, as_json, f"Added user {view.name} with the role {view.role}.")


@user.command("list")
@requires(Permission.USER_MANAGE)
@json_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List every user, their role and whether they are disabled.

    Example: mailhygiene user list --json
    """
    views = list_users(app(ctx).store)
    if as_json:
        print_json([_user_dict(view) for view in views])
        return
    print_table(
        None,
        ("user", "role", "status", "added", "added by"),
        [
            (
                view.name,
                view.role,
                "disabled" if view.disabled else "enabled",
                fmt_time(view.created_at),
                view.created_by,
            )
            for view in views
        ],
    )


@user.command("disable")
@requires(Permission.USER_MANAGE)
@click.argument("name")
@json_option
@click.pass_context
def disable(ctx: click.Context, name: str, as_json: bool) -> None:
    """Withdraw NAME's access; their history stays in the records and the audit log.

    Example: mailhygiene user disable anna.berg
    """
    view = disable_user(app(ctx).store, name=name, actor=acting_user(ctx), now=datetime.now(UTC))
    _show(view, as_json, f"Disabled user {view.name}.")


@user.command("enable")
@requires(Permission.USER_MANAGE)
@click.argument("name")
@json_option
@click.pass_context
def enable(ctx: click.Context, name: str, as_json: bool) -> None:
    """Give a disabled user their access back, with the role they had.

    Example: mailhygiene user enable anna.berg
    """
    view = enable_user(app(ctx).store, name=name, actor=acting_user(ctx), now=datetime.now(UTC))
    _show(view, as_json, f"Enabled user {view.name} (role {view.role}).")


@user.command("role")
@requires(Permission.USER_MANAGE)
@click.argument("name")
@click.argument("role_name", metavar="ROLE", type=ROLE_CHOICE)
@json_option
@click.pass_context
def role(ctx: click.Context, name: str, role_name: str, as_json: bool) -> None:
    """Give NAME another ROLE.

    Example: mailhygiene user role anna.berg manager
    """
    view = set_role(
        app(ctx).store,
        name=name,
        role=Role(role_name),
        actor=acting_user(ctx),
        now=datetime.now(UTC),
    )
    _show(view, as_json, f"User {view.name} now has the role {view.role}.")


@user.command("passwd")
@requires(Permission.USER_MANAGE)
@click.argument("name")
@click.option(
    "--password-file",
    metavar="FILE",
    help="Read the new password from the first line of FILE ('-': standard input) "
    "instead of asking for it.",
)
@json_option
@click.pass_context
def passwd(ctx: click.Context, name: str, password_file: str | None, as_json: bool) -> None:
    """Set NAME's password for the web page ('mailhygiene serve'); their sessions end.

    The password is asked for twice without echo, or read from a file or standard
    input; it is never given on the command line. Only an argon2 hash is stored.

    Example: mailhygiene user passwd anna.berg
    """
    password = _read_password(password_file)
    view = set_password(
        app(ctx).store,
        name=name,
        password=password,
        actor=acting_user(ctx),
        now=datetime.now(UTC),
    )
    _show(view, as_json, f"Password set for {view.name}; they can log in to the web page.")


def _read_password(password_file: str | None) -> str:
    """The new password: from ``password_file`` ('-' = stdin), else asked for twice."""
    if password_file is None:
        if not sys.stdin.isatty():
            raise InputError(
                "no terminal to ask for the password on; pipe it in with --password-file -"
            )
        password: str = click.prompt(
            "New password", hide_input=True, confirmation_prompt="Repeat it"
        )
    elif password_file == "-":  # noqa: S105 - the name of standard input, not a password
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            with Path(password_file).open(encoding="utf-8") as stream:
                password = stream.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InputError(f"cannot read --password-file {password_file}: {reason}") from None
    check_password_strength(password)
    return password


def _show(view: UserView, as_json: bool, message: str) -> None:
    if as_json:
        print_json(_user_dict(view))
    else:
        click.echo(message)


def _user_dict(view: UserView) -> dict[str, Any]:
    return {
        "name": view.name,
        "role": view.role,
        "disabled": view.disabled,
        "created_at": view.created_at,
        "created_by": view.created_by,
    }


COMMANDS = [user]
