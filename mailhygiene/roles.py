"""Roles and what each may do: the one authorisation matrix of mailhygiene.

Every command declares the ``Permission`` it needs (``cli/auth.py::requires``); a role
is a fixed set of permissions. The matrix is deliberately small and static so it can be
read, reviewed and tested in one place:

    support    read, sync, case_manage, tag
    manager    support + plan_create, plan_approve, plan_execute, quarantine_restore,
               audit_read, subject_find
    admin      everything, and only the admin: restricting a person's mail
               (subject_restrict) and seeing restricted mail (restricted_read)
    scheduler  what ``mailhygiene run`` needs: read, sync, tag (automatic case linking),
               plan_create, plan_execute, quarantine_expunge, run_scheduled

The scheduler holds ``plan_execute`` but not ``plan_approve``: it may only execute plans
that the purge service approved automatically (within the configured limit). That
restriction is about the plan, not the role, so the purge service enforces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from mailhygiene.errors import PermissionDenied


class Role(StrEnum):
    """What a user is, as stored in ``users.role``."""

    SUPPORT = "support"
    MANAGER = "manager"
    ADMIN = "admin"
    SCHEDULER = "scheduler"


class Permission(StrEnum):
    """One kind of action; every command needs exactly one."""

    READ = "read"
    SYNC = "sync"
    CASE_MANAGE = "case_manage"
    TAG = "tag"
    HOLD_MANAGE = "hold_manage"
    PLAN_CREATE = "plan_create"
    PLAN_APPROVE = "plan_approve"
    PLAN_EXECUTE = "plan_execute"
    QUARANTINE_RESTORE = "quarantine_restore"
    QUARANTINE_EXPUNGE = "quarantine_expunge"
    USER_MANAGE = "user_manage"
    SUBJECT_FIND = "subject_find"
    SUBJECT_EXPORT = "subject_export"
    SUBJECT_ERASE = "subject_erase"
    SUBJECT_RESTRICT = "subject_restrict"
    RESTRICTED_READ = "restricted_read"
    AUDIT_READ = "audit_read"
    RULES_MANAGE = "rules_manage"
    RUN_SCHEDULED = "run_scheduled"


_SUPPORT = frozenset({Permission.READ, Permission.SYNC, Permission.CASE_MANAGE, Permission.TAG})
_MANAGER = _SUPPORT | {
    Permission.PLAN_CREATE,
    Permission.PLAN_APPROVE,
    Permission.PLAN_EXECUTE,
    Permission.QUARANTINE_RESTORE,
    Permission.AUDIT_READ,
    Permission.SUBJECT_FIND,
}
# The scheduler executes nothing directly: ``run`` executes only the plans it may
# auto-approve (within the policy's limit); everything larger waits for a manager.
_SCHEDULER = frozenset(
    {
        Permission.READ,
        Permission.SYNC,
        Permission.TAG,
        Permission.PLAN_CREATE,
        Permission.QUARANTINE_EXPUNGE,
        Permission.RUN_SCHEDULED,
    }
)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.SUPPORT: _SUPPORT,
        Role.MANAGER: _MANAGER,
        Role.ADMIN: frozenset(Permission),
        Role.SCHEDULER: _SCHEDULER,
    }
)

# The roles a person is pointed to when refused, least powerful first. The scheduler is a
# service account, never the advice for a person.
_ESCALATION = (Role.SUPPORT, Role.MANAGER, Role.ADMIN)


def allows(role: Role, permission: Permission) -> bool:
    """True when ``role`` carries ``permission``."""
    return permission in ROLE_PERMISSIONS[role]


def least_role_for(permission: Permission) -> Role:
    """The least powerful human role that carries ``permission`` (admin carries all)."""
    return next(role for role in _ESCALATION if allows(role, permission))


def require(role: Role, permission: Permission, *, action: str | None = None) -> None:
    """Raise ``PermissionDenied`` unless ``role`` carries ``permission``.

    ``action`` names what was attempted in the message (a command such as
    ``mailhygiene user add``); without it the permission's name is used.
    """
    if allows(role, permission):
        return
    # why: the role matrix is the only thing that stands between staff and bulk deletion
    what = action or f"the {permission.value!r} permission"
    needed = least_role_for(permission)
    raise PermissionDenied(f"{what} needs the {needed.value!r} role (you are {role.value!r})")


def parse_role(value: str) -> Role:
    """The role named ``value``; ``ValueError`` names the valid roles."""
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown role {value!r}; choose one of {valid}") from None


__all__ = [
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "allows",
    "least_role_for",
    "parse_role",
    "require",
]
