"""The web application: configuration, security headers, error pages, template helpers.

:func:`create_app` builds a Flask application around one open store. Everything the
views need — the store, the policy, a way to reach each account's IMAP server, the
clock — is passed in (:class:`WebContext`), so the tests run the real application
against a throwaway Dovecot and SQLite and can move the clock.

Safety and privacy defaults:

* every POST carries a CSRF token (Flask-WTF); a missing or stale one is refused;
* the session cookie is signed, ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` (named
  ``__Host-…``) unless ``[web] secure_cookie = false``; it ends after
  ``session_idle_minutes`` without a request and ``session_max_hours`` after login;
* pages are sent with ``Cache-Control: no-store`` (they show personal data) and a
  Content-Security-Policy that allows no script at all; templates autoescape, and mail
  is only ever shown as text;
* errors become a page with one line saying what to do, never a traceback.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Lock
from typing import Any, Protocol

from flask import Flask, Response, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from mailhygiene.config.settings import WebSettings
from mailhygiene.conversations import ConversationServer
from mailhygiene.errors import (
    ConfigError,
    ImapError,
    InputError,
    MailhygieneError,
    NotFoundError,
    PermissionDenied,
    SafetyRefusal,
    SecretError,
    StoreError,
)
from mailhygiene.policy import Policy
from mailhygiene.purge.execute import PurgeServer
from mailhygiene.purge.quarantine import QuarantineServer
from mailhygiene.roles import Permission, allows
from mailhygiene.store.session import Store
from mailhygiene.web.throttle import LoginThrottle

log = logging.getLogger("mailhygiene.web")

MIN_SECRET = 32
"""Shortest session secret accepted (characters)."""

_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class WebMailServer(ConversationServer, PurgeServer, QuarantineServer, Protocol):
    """Everything the web page asks of a mail server (``ImapMailServer`` has it all)."""


ServerFor = Callable[[str], AbstractContextManager[WebMailServer]]
"""Opens a connected server for an account name."""


@dataclass
class WebContext:
    """What the views work with; one per application."""

    store: Store
    policy: Callable[[], Policy]
    server_for: ServerFor
    accounts: Sequence[str]
    settings: WebSettings
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    executions: dict[str, Future[Any]] = field(default_factory=dict)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="execute")
    )
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    lock: Lock = field(default_factory=Lock)

    def now(self) -> datetime:
        return self.clock()


def web() -> WebContext:
    """The current application's context."""
    context = current_app.extensions["mailhygiene"]
    assert isinstance(context, WebContext)
    return context


class PolicySource:
    """``rules.toml``, re-read when the file changes (a new version applies to the next
    page, as it would to the next command)."""

    def __init__(self, path: Path, load: Callable[[Path], Policy]) -> None:
        self._path = path
        self._load = load
        self._lock = Lock()
        self._stamp: tuple[int, int] | None = None
        self._policy: Policy | None = None

    def __call__(self) -> Policy:
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if self._policy is None or stamp != self._stamp:
                self._policy = self._load(self._path)
                self._stamp = stamp
            return self._policy


def session_secret(settings: WebSettings) -> tuple[str, bool]:
    """The session signing secret and whether it is ephemeral (made up for this run).

    From the environment variable ``secret_env`` or the file ``secret_file``; with
    neither configured, a random one that lives as long as the process (everyone is
    logged out by a restart). A configured source that is missing or too short is an
    error, never silently replaced.
    """
    if settings.secret_env:
        value = os.environ.get(settings.secret_env, "")
        where = f"environment variable {settings.secret_env}"
    elif settings.secret_file:
        try:
            value = settings.secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(
                f"[web] secret_file {settings.secret_file} cannot be read: {reason}"
            ) from None
        where = f"file {settings.secret_file}"
    else:
        return secrets.token_urlsafe(48), True
    if len(value) < MIN_SECRET:
        raise SecretError(
            f"[web] the session secret in {where} is {'missing' if not value else 'too short'}; "
            f"it needs at least {MIN_SECRET} random characters, e.g. from: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return value, False


def create_app(context: WebContext, *, secret: str) -> Flask:
    """The web application over ``context``; ``secret`` signs sessions and CSRF tokens."""
    if len(secret) < MIN_SECRET:
        raise SecretError(f"the session secret needs at least {MIN_SECRET} characters")
    app = Flask("mailhygiene.web", template_folder="templates", static_folder="static")
    settings = context.settings
    app.config.update(
        SECRET_KEY=secret,
        SESSION_COOKIE_NAME="__Host-mailhygiene" if settings.secure_cookie else "mailhygiene",
        SESSION_COOKIE_SECURE=settings.secure_cookie,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_idle_minutes),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session, which expires
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["mailhygiene"] = context
    CSRFProtect(app)
    _register_helpers(app)
    _register_errors(app)

    from mailhygiene.web import auth, dashboard, mail, plans, quarantine

    for module in (auth, dashboard, mail, plans, quarantine):
        app.register_blueprint(module.blueprint)
    return app


# -- responses -----------------------------------------------------------------------------


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "static":
        # why: pages show mail and personal data; no browser or proxy may keep a copy
        response.headers["Cache-Control"] = "no-store"
    return response


def _status_of(error: MailhygieneError) -> int:
    """The HTTP status of one of our errors (the one place they are mapped)."""
    if isinstance(error, PermissionDenied):
        return 403
    if isinstance(error, SafetyRefusal):
        return 409
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, InputError):
        return 400
    if isinstance(error, ImapError):
        return 502
    if isinstance(error, StoreError):
        return 503
    return 500


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


def _register_errors(app: Flask) -> None:
    app.after_request(_security_headers)

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> tuple[str, int]:
        # why: a form not sent from a page of ours (or from an expired one) must not act
        return error_page(
            400,
            "The form could not be accepted",
            "It was not sent from a current page of this site (or it expired); "
            "go back, reload the page and try again.",
        )

    @app.errorhandler(MailhygieneError)
    def our_error(error: MailhygieneError) -> tuple[str, int]:
        status = _status_of(error)
        if isinstance(error, ConfigError | SecretError):
            log.error("configuration problem: %s", error)
        titles = {403: "Not allowed", 404: "Not found", 409: "Refused", 400: "Cannot do that"}
        return error_page(status, titles.get(status, "Something is wrong"), str(error))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        status = error.code or 500
        return error_page(status, error.name, error.description or "")

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[str, int]:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_page(
            500,
            "Something went wrong",
            "The error was written to the server log; try again, and tell the "
            "administrator if it happens again.",
        )


# -- templates -----------------------------------------------------------------------------


def can(permission: Permission | str) -> bool:
    """Whether the logged-in user's role carries ``permission`` (to show a button, or to
    show restricted mail; a view that acts checks with ``@requires``, audited)."""
    acting = g.get("acting")
    if acting is None or acting.role is None:
        return False
    return allows(acting.role, Permission(permission))


def safe_path(target: str | None, default: str) -> str:
    """``target`` when it is a path on this site (no scheme, host or ``//``), else
    ``default``: a form's "back" must not send anyone elsewhere."""
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        # why: browsers drop tabs and line breaks, so "/\t/evil.example" would leave the site
        and not any(ch.isspace() or not ch.isprintable() for ch in target)
    ):
        return target
    return default


def _register_helpers(app: Flask) -> None:
    app.jinja_env.autoescape = True

    def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None:
            return "—"
        return value.astimezone(web().policy().zone).strftime(fmt)

    def local_date(value: datetime | None) -> str:
        return local_time(value, "%Y-%m-%d")

    def size(value: int | None) -> str:
        amount = float(value or 0)
        for unit in ("B", "KB", "MB", "GB"):
            if amount < 1024 or unit == "GB":
                return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
            amount /= 1024
        return f"{amount:.1f} GB"

    app.jinja_env.filters.update(local_time=local_time, local_date=local_date, size=size)
    app.jinja_env.globals.update(can=can)

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"acting": g.get("acting")}


__all__ = [
    "MIN_SECRET",
    "PolicySource",
    "ServerFor",
    "WebContext",
    "WebMailServer",
    "can",
    "create_app",
    "error_page",
    "safe_path",
    "session_secret",
    "web",
]
