"""``@requires(Permission.X)``: every command says what it needs, and is refused without it.

Put the decorator directly under ``@click.command()``::

    @click.command()
    @requires(Permission.PLAN_APPROVE)
    @click.argument("ref")
    @click.pass_context
    def approve(ctx, ref): ...
        actor = acting_user(ctx)

Before the command runs, the acting user (``$MAILHYGIENE_ACTOR`` for service accounts
such as the scheduler, else the OS login) is looked up in the users table and their
role checked; a refusal is audited (``auth:refused``) and exits with code 3. The
permission is also recorded on the callback (``__mailhygiene_permission__``) so a test
can walk the command tree and fail for any command that declares none
(``unguarded_commands``).

The identity comes from the environment, so this protects against mistakes and
curiosity by staff, not against someone who can set ``MAILHYGIENE_ACTOR`` *and* reach
the database directly; database credentials are the boundary for that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import click

from mailhygiene.cli.context import app, current_actor
from mailhygiene.roles import Permission, allows
from mailhygiene.users import ActingUser, authorise

F = TypeVar("F", bound=Callable[..., Any])

PERMISSION_ATTRIBUTE = "__mailhygiene_permission__"
_ACTING_KEY = "mailhygiene.acting_user"


def requires(permission: Permission, *, bootstrap: bool = False) -> Callable[[F], F]:
    """Refuse the command unless the acting user's role carries ``permission``.

    ``bootstrap=True`` (only ``user add``) lets the command run while the users table
    is empty; the service then accepts nothing but creating an admin.
    """

    def decorate(func: F) -> F:
        if isinstance(func, click.Command):
            raise TypeError("@requires must come below @click.command(), not above it")

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            ctx.meta[_ACTING_KEY] = authorise(
                app(ctx).store,
                name=current_actor(),
                permission=permission,
                action=ctx.command_path,
                now=datetime.now(UTC),
                allow_bootstrap=bootstrap,
            )
            return func(*args, **kwargs)

        setattr(guarded, PERMISSION_ATTRIBUTE, permission)
        return cast(F, guarded)

    return decorate


def acting_identity(ctx: click.Context) -> ActingUser:
    """The user this command was authorised as (name and role)."""
    acting = ctx.meta.get(_ACTING_KEY)
    if not isinstance(acting, ActingUser):
        raise RuntimeError(f"{ctx.command_path} has no @requires(...); it cannot know its actor")
    return acting


def acting_user(ctx: click.Context) -> str:
    """The authorised actor's name, to record as ``actor`` / ``created_by`` and in the audit."""
    return acting_identity(ctx).name


def acting_user_may(ctx: click.Context, permission: Permission) -> bool:
    """True when the authorised actor's role also carries ``permission`` (e.g. whether
    ``search`` shows restricted mail); never audited, as nothing was refused."""
    role = acting_identity(ctx).role
    return role is not None and allows(role, permission)


def permission_of(command: click.Command) -> Permission | None:
    """The permission ``command`` declared with ``@requires``, if any."""
    value = getattr(command.callback, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, Permission) else None


def unguarded_commands(group: click.Group, prefix: str = "") -> list[str]:
    """Every command below ``group`` (groups themselves excepted) without ``@requires``."""
    missing: list[str] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            missing.extend(unguarded_commands(command, f"{path} "))
        elif permission_of(command) is None:
            missing.append(path)
    return missing


__all__ = [
    "PERMISSION_ATTRIBUTE",
    "acting_identity",
    "acting_user",
    "permission_of",
    "requires",
    "unguarded_commands",
]
