"""The quarantine: purged mail waiting out its grace period, and putting it back.

Restoring goes through ``purge.quarantine.restore``, as ``mailhygiene quarantine restore``
does: each message is found in the quarantine folder by its identity and moved back to
the folder it came from.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from mailhygiene.errors import InputError, MailhygieneError, NotFoundError, PermissionDenied
from mailhygiene.purge import quarantine as quarantine_service
from mailhygiene.purge.browse import quarantine_page
from mailhygiene.roles import Permission
from mailhygiene.web.app import web
from mailhygiene.web.auth import requires

PAGE = 100

blueprint = Blueprint("quarantine", __name__)


@blueprint.get("/quarantine")
@requires(Permission.READ)
def index() -> str:
    context = web()
    account = _account(request.args.get("account"))
    after = request.args.get("after", "")
    page = quarantine_page(
        context.store,
        account=account,
        after_id=int(after) if after.isdigit() else None,
        limit=PAGE,
        plan_ref=request.args.get("plan") or None,
    )
    return render_template("quarantine.html", page=page, accounts=context.accounts)


@blueprint.post("/quarantine/restore")
@requires(Permission.QUARANTINE_RESTORE)
def restore() -> Response:
    """Move the chosen entries (or everything one plan moved) back where they came from."""
    context = web()
    account = _account(request.form.get("account"))
    plan_ref = request.form.get("plan") or None
    ids = [int(v) for v in request.form.getlist("entry") if v.isdigit()]
    back = url_for("quarantine.index", account=account, plan=plan_ref)
    try:
        if not ids and not plan_ref:
            raise InputError("choose the messages to restore, or restore a whole plan")
        with context.server_for(account) as server:
            report = quarantine_service.restore(
                context.store,
                server,
                context.policy(),
                account=account,
                actor=g.acting.name,
                now=context.now(),
                entry_ids=ids or None,
                plan_ref=plan_ref,
            )
    except PermissionDenied:
        raise
    except MailhygieneError as error:
        flash(str(error), "error")
        return redirect(back)
    flash(f"Restored {report.restored} message(s) to the folders they came from.", "ok")
    for reason, count in report.skipped.items():
        flash(f"Skipped {count}: {reason}", "warning")
    return redirect(back)


def _account(name: str | None) -> str:
    accounts = web().accounts
    if not accounts:
        raise NotFoundError("no [accounts.NAME] table in the settings file")
    if not name:
        return accounts[0]
    if name not in accounts:
        raise NotFoundError(f"no account named {name!r}")
    return name


__all__ = ["blueprint"]
