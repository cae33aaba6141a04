"""The role → permission matrix, exactly as issue 6 states it, and the refusal message."""

from __future__ import annotations

import pytest

from mailhygiene.errors import PermissionDenied
from mailhygiene.roles import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    allows,
    least_role_for,
    parse_role,
    require,
)

P = Permission

EXPECTED = {
    Role.SUPPORT: {P.READ, P.SYNC, P.CASE_MANAGE, P.TAG},
    Role.MANAGER: {
        P.READ,
        P.SYNC,
        P.CASE_MANAGE,
        P.TAG,
        P.PLAN_CREATE,
        P.PLAN_APPROVE,
        P.PLAN_EXECUTE,
        P.QUARANTINE_RESTORE,
        P.AUDIT_READ,
        P.SUBJECT_FIND,
    },
    Role.ADMIN: set(Permission),
    Role.SCHEDULER: {
        P.READ,
        P.SYNC,
        P.TAG,
        P.PLAN_CREATE,
        P.QUARANTINE_EXPUNGE,
        P.RUN_SCHEDULED,
    },
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_matrix(role: Role, permission: Permission) -> None:
    assert allows(role, permission) is (permission in EXPECTED[role])


def test_every_role_has_a_row() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)


def test_manager_is_a_superset_of_support() -> None:
    assert ROLE_PERMISSIONS[Role.SUPPORT] < ROLE_PERMISSIONS[Role.MANAGER]


@pytest.mark.parametrize(
    "permission",
    [
        P.PLAN_APPROVE,
        P.PLAN_EXECUTE,
        P.USER_MANAGE,
        P.SUBJECT_ERASE,
        P.SUBJECT_EXPORT,
        P.RULES_MANAGE,
        P.HOLD_MANAGE,
        P.CASE_MANAGE,
        P.AUDIT_READ,
        P.QUARANTINE_RESTORE,
        P.SUBJECT_RESTRICT,
        P.RESTRICTED_READ,
    ],
)
def test_scheduler_cannot_do_what_the_run_does_not_need(permission: Permission) -> None:
    assert not allows(Role.SCHEDULER, permission)


@pytest.mark.parametrize(
    ("permission", "least"),
    [
        (P.READ, Role.SUPPORT),
        (P.TAG, Role.SUPPORT),
        (P.PLAN_APPROVE, Role.MANAGER),
        (P.AUDIT_READ, Role.MANAGER),
        (P.USER_MANAGE, Role.ADMIN),
        (P.QUARANTINE_EXPUNGE, Role.ADMIN),
        (P.RUN_SCHEDULED, Role.ADMIN),
        (P.SUBJECT_RESTRICT, Role.ADMIN),
        (P.RESTRICTED_READ, Role.ADMIN),
    ],
)
def test_least_role_points_people_at_a_human_role(permission: Permission, least: Role) -> None:
    assert least_role_for(permission) is least


def test_require_passes_silently() -> None:
    require(Role.MANAGER, P.PLAN_APPROVE)


def test_require_names_the_needed_role_and_the_current_one() -> None:
    with pytest.raises(PermissionDenied) as caught:
        require(Role.SUPPORT, P.PLAN_APPROVE, action="mailhygiene purge approve")
    assert str(caught.value) == (
        "mailhygiene purge approve needs the 'manager' role (you are 'support')"
    )
    assert caught.value.exit_code == 3


def test_require_without_action_names_the_permission() -> None:
    with pytest.raises(PermissionDenied, match=r"'user_manage' permission needs the 'admin'"):
        require(Role.MANAGER, P.USER_MANAGE)


def test_parse_role() -> None:
    assert parse_role("admin") is Role.ADMIN
    with pytest.raises(ValueError, match="choose one of support, manager, admin, scheduler"):
        parse_role("root")
