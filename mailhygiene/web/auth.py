"""Logging in and out, sessions, and ``@requires(Permission.X)`` on every view.

Exactly as on the command line (``cli/auth.py``), every view declares the one permission
it needs, directly under its route::

    @blueprint.get("/plans/<ref>")
    @requires(Permission.PLAN_APPROVE)
    def review(ref: str) -> str: ...

Before the view runs, the logged-in user is looked up again and their role checked with
``users.authorise`` — so disabling a user or changing their role takes effect on their
next click — and a refusal is audited (``auth:refused``) and answered with 403. The
login and logout views are marked ``@public``; :func:`unguarded_endpoints` lists any
view that declares neither, and a test fails on it.

**Who is logged in** comes from one of two places:

* a password login (``mailhygiene user passwd`` sets it): the signed session cookie
  remembers the user, when they logged in, when they were last seen and a stamp of
  their password hash — a new password ends every session of theirs;
* a reverse proxy listed in ``[web] trusted_proxies`` that sends ``X-Remote-User``. The
  header is believed only on connections from those addresses; from anywhere else it is
  ignored.

Sessions end after ``session_idle_minutes`` without a request and ``session_max_hours``
after login. Failed logins are audited and throttled per name (``web/throttle.py``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from mailhygiene.errors import PermissionDenied
from mailhygiene.roles import Permission
from mailhygiene.users import authorise, check_password, password_stamp
from mailhygiene.web.app import safe_path, web

F = TypeVar("F", bound=Callable[..., Any])

PERMISSION_ATTRIBUTE = "__mailhygiene_permission__"
PUBLIC = "public"
REMOTE_USER_HEADER = "X-Remote-User"

blueprint = Blueprint("auth", __name__)


def requires(permission: Permission) -> Callable[[F], F]:
    """Refuse the view unless the logged-in user's role carries ``permission``."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            name = current_user()
            if name is None:
                return _to_login()
            context = web()
            g.acting = authorise(
                context.store,
                name=name,
                permission=permission,
                action=f"web {request.method} {request.path}",
                now=context.now(),
            )
            return view(*args, **kwargs)

        setattr(guarded, PERMISSION_ATTRIBUTE, permission)
        return cast(F, guarded)

    return decorate


def also_requires(permission: Permission) -> None:
    """Inside a view: the user must also carry ``permission`` (checked and audited)."""
    context = web()
    authorise(
        context.store,
        name=g.acting.name,
        permission=permission,
        action=f"web {request.method} {request.path}",
        now=context.now(),
    )


def public(view: F) -> F:
    """Mark a view that anyone may open (the login page)."""
    setattr(view, PERMISSION_ATTRIBUTE, PUBLIC)
    return view


def permission_of(view: Callable[..., Any]) -> Permission | str | None:
    """What ``view`` declared: a permission, :data:`PUBLIC`, or None."""
    value = getattr(view, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, Permission) or value == PUBLIC else None


def unguarded_endpoints(app: Flask) -> list[str]:
    """Every endpoint of ``app`` that declares no permission (and is not ``@public``).

    Flask's own ``static`` endpoint serves the style sheet and nothing else.
    """
    return sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint != "static" and permission_of(view) is None
    )


# -- identity --------------------------------------------------------------------------------


def current_user() -> str | None:
    """The logged-in user's name, or None (not logged in, or the session ended)."""
    context = web()
    now = context.now()
    proxied = _proxy_user()
    if proxied is not None:
        if session.get("user") != proxied or session.get("via") != "proxy":
            session.clear()
            _start_session(proxied, "proxy", None, now)
        return proxied
    name = session.get("user")
    if not isinstance(name, str) or session.get("via") != "password":
        return None
    settings = context.settings
    started, seen = _time(session.get("start")), _time(session.get("seen"))
    idle = timedelta(minutes=settings.session_idle_minutes)
    longest = timedelta(hours=settings.session_max_hours)
    if started is None or seen is None or now - seen > idle or now - started > longest:
        # why: an unattended browser must not stay logged in to other people's mail
        session.clear()
        flash("Your session has ended; log in again.", "info")
        return None
    if password_stamp(context.store, name) != session.get("stamp"):
        # why: a new password (or none) ends every session made with the old one
        session.clear()
        flash("Your password was changed; log in again.", "info")
        return None
    session["seen"] = _stamp_time(now)
    return name


def _proxy_user() -> str | None:
    """``X-Remote-User`` when the connection comes from a trusted reverse proxy."""
    trusted = web().settings.trusted_proxies
    if not trusted or not request.remote_addr:
        return None
    try:
        peer = ipaddress.ip_address(request.remote_addr)
    except ValueError:
        return None
    if not any(peer in network for network in trusted):
        return None
    value = request.headers.get(REMOTE_USER_HEADER, "").strip()
    return value or None


def _start_session(name: str, via: str, stamp: str | None, now: datetime) -> None:
    session.permanent = True
    session.update(
        {
            "user": name,
            "via": via,
            "stamp": stamp,
            "start": _stamp_time(now),
            "seen": _stamp_time(now),
        }
    )


def _stamp_time(at: datetime) -> int:
    return int(at.timestamp())


def _time(value: object) -> datetime | None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _to_login() -> Response:
    if request.method == "GET":
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    flash("Your session has ended; log in again and repeat what you did.", "info")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    return safe_path(target, url_for("dashboard.index"))


# -- views ---------------------------------------------------------------------------------------


@blueprint.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    """The login form; on success, back to where the user was going."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(target)
        return render_template("login.html", next=target, name="")
    context = web()
    now = context.now()
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    throttle = context.throttle
    wait = throttle.wait(name, now)
    if wait is not None:
        # why: slows down guessing; argon2 alone would allow hundreds of tries an hour
        minutes = max(1, int(wait.total_seconds() // 60) + 1)
        message = f"Too many failed logins for this name; try again in {minutes} minute(s)."
        return render_template("login.html", next=target, name=name, error=message), 429
    try:
        acting = check_password(
            context.store, name=name, password=password, action="web login", now=now
        )
    except PermissionDenied as refusal:
        throttle.failed(name, now)
        return render_template("login.html", next=target, name=name, error=str(refusal)), 401
    throttle.succeeded(name)
    session.clear()
    _start_session(acting.name, "password", password_stamp(context.store, acting.name), now)
    return redirect(target)


@blueprint.post("/logout")
@public
def logout() -> Response:
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


__all__ = [
    "PERMISSION_ATTRIBUTE",
    "PUBLIC",
    "REMOTE_USER_HEADER",
    "also_requires",
    "blueprint",
    "current_user",
    "permission_of",
    "public",
    "requires",
    "unguarded_endpoints",
]
