"""Who may use mailhygiene, with which role; every change is audited.

A fresh database has no users, and then nobody may do anything except create the first
admin (``mailhygiene user add NAME --role admin``, audited with ``bootstrap: true``).
From then on every command resolves its actor to an enabled user and checks the
user's role against the command's permission (``authorise``); refusals are audited.

User changes take the audit chain's writer lock before they read anything, so the
"is this the first user?" and "is this the last admin?" checks cannot race.

The web page logs people in with a password (``set_password``, ``check_password``):
only an argon2id hash is stored, in ``users.password_hash``; a user without one cannot
log in with a password (a trusted reverse proxy may still name them).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.errors import InputError, NotFoundError, PermissionDenied, SafetyRefusal
from mailhygiene.roles import Permission, Role, parse_role, require
from mailhygiene.store import audit_queries, user_queries
from mailhygiene.store.models import User
from mailhygiene.store.session import Session, Store

_MAX_NAME = 200
MIN_PASSWORD = 12
"""Shortest password accepted: long enough to resist guessing at argon2's pace."""
_MAX_PASSWORD = 1024
_LOGIN_REFUSED = "wrong user name or password"


@dataclass(frozen=True)
class ActingUser:
    """The person or service account a command runs as.

    ``role`` is None only while bootstrapping: no user exists yet and the command is
    the one allowed to create the first admin.
    """

    name: str
    role: Role | None


@dataclass(frozen=True)
class UserView:
    name: str
    role: str
    disabled: bool
    created_at: datetime
    created_by: str


def resolve_actor(store: Store, name: str) -> ActingUser:
    """The enabled user called ``name``; ``PermissionDenied`` says how to get access."""
    with store.transaction() as session:
        return ActingUser(name, _resolve_role(session, name))


def authorise(
    store: Store,
    *,
    name: str,
    permission: Permission,
    action: str,
    now: datetime,
    allow_bootstrap: bool = False,
) -> ActingUser:
    """Resolve ``name`` and check it may do ``action``; audit and re-raise any refusal.

    ``allow_bootstrap`` lets ``action`` through while there are no users at all; the
    action itself must then insist on creating an admin (``add_user`` does).
    """
    try:
        with store.transaction() as session:
            if allow_bootstrap and user_queries.count_users(session) == 0:
                return ActingUser(name, None)
            role = _resolve_role(session, name)
            require(role, permission, action=action)
            return ActingUser(name, role)
    except PermissionDenied as refusal:
        audit.record(
            store,
            actor=name or "(unknown)",
            tag=AuditTag.AUTH_REFUSED,
            subject=action,
            data={"permission": permission.value, "reason": str(refusal)},
            at=now,
        )
        raise


def add_user(store: Store, *, name: str, role: Role, actor: str, now: datetime) -> UserView:
    """Create a user; on an empty table only an admin (the bootstrap)."""
    _check_name(name)
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        bootstrap = user_queries.count_users(session) == 0
        if bootstrap and role is not Role.ADMIN:
            # why: if the first user is not an admin, nobody can ever add or change users
            raise PermissionDenied(
                "there are no users yet and the first one must be an admin: "
                f"mailhygiene user add {name} --role admin"
            )
        if user_queries.get_user(session, name) is not None:
            raise InputError(
                f"user {name!r} already exists; change their role with: "
                f"mailhygiene user role {name} {role.value}"
            )
        user = user_queries.add_user(session, name=name, role=role.value, actor=actor, now=now)
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.USER_ADD,
            subject=name,
            data={"role": role.value, "bootstrap": bootstrap},
            at=now,
        )
        return _view(user)


def list_users(store: Store) -> list[UserView]:
    with store.transaction() as session:
        return [_view(user) for user in user_queries.list_users(session)]


def disable_user(store: Store, *, name: str, actor: str, now: datetime) -> UserView:
    """Take away all access; the user and their history stay for the audit trail."""
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        user = _get(session, name)
        if user.disabled:
            raise InputError(f"user {name!r} is already disabled")
        _keep_an_admin(session, user, "disabling")
        user.disabled = True
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.USER_DISABLE,
            subject=name,
            data={"role": user.role},
            at=now,
        )
        return _view(user)


def enable_user(store: Store, *, name: str, actor: str, now: datetime) -> UserView:
    """Give a disabled user their access back, with the role they had."""
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        user = _get(session, name)
        if not user.disabled:
            raise InputError(f"user {name!r} is not disabled")
        user.disabled = False
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.USER_ENABLE,
            subject=name,
            data={"role": user.role},
            at=now,
        )
        return _view(user)


def set_role(store: Store, *, name: str, role: Role, actor: str, now: datetime) -> UserView:
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        user = _get(session, name)
        if user.role == role.value:
            raise InputError(f"user {name!r} already has the role {role.value!r}")
        if role is not Role.ADMIN:
            _keep_an_admin(session, user, "demoting")
        previous, user.role = user.role, role.value
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.USER_ROLE,
            subject=name,
            data={"from": previous, "to": role.value},
            at=now,
        )
        return _view(user)


def set_password(store: Store, *, name: str, password: str, actor: str, now: datetime) -> UserView:
    """Store an argon2id hash of ``password`` for ``name``; their web sessions end.

    Audited (``user:password``) with who set it, never the password or its hash.
    """
    check_password_strength(password)
    hashed = _hasher().hash(password)
    with store.transaction() as session:
        audit_queries.lock_chain(session)
        user = _get(session, name)
        first = user.password_hash is None
        user.password_hash = hashed
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.USER_PASSWORD,
            subject=name,
            data={"first": first},
            at=now,
        )
        return _view(user)


def check_password_strength(password: str) -> None:
    """``InputError`` unless ``password`` is a usable password (length, no line breaks)."""
    if len(password) < MIN_PASSWORD:
        raise InputError(
            f"the password is too short: use at least {MIN_PASSWORD} characters "
            "(a few unrelated words make a good one)"
        )
    if len(password) > _MAX_PASSWORD:
        raise InputError(f"the password is longer than {_MAX_PASSWORD} characters")
    if any(not ch.isprintable() for ch in password):
        raise InputError("the password must not contain line breaks or control characters")


def check_password(
    store: Store, *, name: str, password: str, action: str, now: datetime
) -> ActingUser:
    """The enabled user ``name`` when ``password`` is theirs; else ``PermissionDenied``.

    An unknown name, a wrong password and a user without a password get the same
    answer after the same work (a hash is checked either way), so the page does not
    reveal who has an account. Every refusal is audited (``auth:refused``).
    """
    with store.transaction() as session:
        user = user_queries.get_user(session, name) if _usable_name(name) else None
        stored = user.password_hash if user is not None else None
    matched = _verify(stored, password)
    try:
        if not matched or stored is None:
            # why: a guessed password must not get in, and must not learn which part was wrong
            raise PermissionDenied(_LOGIN_REFUSED)
        with store.transaction() as session:
            role = _resolve_role(session, name)
            if _hasher().check_needs_rehash(stored):
                found = user_queries.get_user(session, name)
                if found is not None and found.password_hash == stored:
                    found.password_hash = _hasher().hash(password)
            return ActingUser(name, role)
    except PermissionDenied as refusal:
        audit.record(
            store,
            actor=_audit_name(name),
            tag=AuditTag.AUTH_REFUSED,
            subject=action,
            data={"reason": str(refusal)},
            at=now,
        )
        raise


def password_stamp(store: Store, name: str) -> str | None:
    """A short value that changes whenever ``name``'s password changes (None: no password).

    A web session remembers it; when it no longer matches, the session ends — so setting
    a new password logs the user out everywhere. It reveals nothing about the password.
    """
    with store.transaction() as session:
        user = user_queries.get_user(session, name)
        stored = user.password_hash if user is not None else None
    if not stored:
        return None
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()[:24]


@functools.cache
def _hasher() -> PasswordHasher:
    """argon2id with the library's current recommended parameters (RFC 9106)."""
    return PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    return _hasher().hash("mailhygiene: a password nobody has")


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher().verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _usable_name(name: str) -> bool:
    return bool(name) and len(name) <= _MAX_NAME and name.isprintable()


def _audit_name(name: str) -> str:
    """What a login attempt claimed to be, bounded and printable for the audit log."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name)[:_MAX_NAME]
    return cleaned or "(unknown)"


def _resolve_role(session: Session, name: str) -> Role:
    """The role of the enabled user ``name``, or ``PermissionDenied`` with the remedy."""
    user = user_queries.get_user(session, name) if name else None
    if user is None:
        if user_queries.count_users(session) == 0:
            # why: an empty users table must not mean "everyone may do everything"
            raise PermissionDenied(
                "no users are set up yet, so nobody may use mailhygiene; create the first "
                f"admin with: mailhygiene user add {name or 'NAME'} --role admin"
            )
        # why: only people an admin has named may read or change the mailbox's records
        raise PermissionDenied(
            f"user {name!r} is not allowed to use mailhygiene; an admin can add them with: "
            f"mailhygiene user add {name or 'NAME'} --role support"
        )
    if user.disabled:
        # why: disabling is how access is withdrawn from someone who left or changed job
        raise PermissionDenied(
            f"user {name!r} is disabled; an admin can re-enable them with: "
            f"mailhygiene user enable {name}"
        )
    try:
        return parse_role(user.role)
    except ValueError:
        # why: a role we do not know carries no permissions we could check
        raise PermissionDenied(
            f"user {name!r} has an unknown role {user.role!r}; an admin can set one with: "
            f"mailhygiene user role {name} support"
        ) from None


def _get(session: Session, name: str) -> User:
    user = user_queries.get_user(session, name)
    if user is None:
        raise NotFoundError(f"no user named {name!r}; see: mailhygiene user list")
    return user


def _keep_an_admin(session: Session, user: User, doing: str) -> None:
    if user.role != Role.ADMIN.value or user.disabled:
        return
    if user_queries.count_enabled(session, Role.ADMIN.value) <= 1:
        # why: with no enabled admin nobody could manage users again, and the bootstrap
        # only works on an empty users table
        raise SafetyRefusal(
            f"{doing} {user.name!r} would leave no enabled admin; make someone else an "
            "admin first (mailhygiene user role NAME admin)"
        )


def _check_name(name: str) -> None:
    if (
        not name
        or len(name) > _MAX_NAME
        or any(ch.isspace() or not ch.isprintable() for ch in name)
    ):
        raise InputError(
            f"user name {name!r} must be 1–{_MAX_NAME} printable characters without spaces, "
            "like the login name (e.g. anna.berg)"
        )


def _view(user: User) -> UserView:
    return UserView(user.name, user.role, user.disabled, user.created_at, user.created_by)


__all__ = [
    "MIN_PASSWORD",
    "ActingUser",
    "UserView",
    "add_user",
    "authorise",
    "check_password",
    "check_password_strength",
    "disable_user",
    "enable_user",
    "list_users",
    "password_stamp",
    "resolve_actor",
    "set_password",
    "set_role",
]
