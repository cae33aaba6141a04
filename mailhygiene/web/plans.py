"""Managers' pages: plans, the disposition review, approve / reject, execute.

Approval and execution go through the same services as ``mailhygiene purge approve`` and
``purge execute``: four eyes, the content hash and every re-verification are enforced
there, not here. Execution runs in a background thread (one plan at a time) so a large
plan does not hold a browser request open; the review page shows its progress from the
plan's journal, and an interrupted execution can be resumed from the page or with
``mailhygiene purge resume``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from mailhygiene.errors import InputError, MailhygieneError, PermissionDenied
from mailhygiene.purge.approve import approve_plan, reject_plan
from mailhygiene.purge.browse import plan_list, plan_review, reason_page
from mailhygiene.purge.execute import ExecutionReport, execute_plan
from mailhygiene.purge.plan import stored_summary
from mailhygiene.roles import Permission
from mailhygiene.web.app import WebContext, web
from mailhygiene.web.auth import requires

PLANS_PAGE = 25
ITEMS_PAGE = 100
SAMPLE = 10
"""Messages shown per rule on the review page."""

log = logging.getLogger("mailhygiene.web")
blueprint = Blueprint("plans", __name__)


@blueprint.get("/plans")
@requires(Permission.PLAN_APPROVE)
def index() -> str:
    before = request.args.get("before", "")
    page = plan_list(
        web().store, before_id=int(before) if before.isdigit() else None, limit=PLANS_PAGE
    )
    return render_template("plans.html", page=page)


@blueprint.get("/plans/<ref>")
@requires(Permission.PLAN_APPROVE)
def review(ref: str) -> str:
    """The disposition review: totals, a sample per rule, exclusions, diff, decisions."""
    context = web()
    policy = context.policy()
    plan = plan_review(context.store, policy, ref, per_reason=SAMPLE)
    return render_template(
        "plan.html",
        review=plan,
        plan=plan.summary,
        execution=_execution_state(context, ref),
        auto_approve_limit=policy.auto_approve_limit,
        me=g.acting.name,
    )


@blueprint.get("/plans/<ref>/items")
@requires(Permission.PLAN_APPROVE)
def items(ref: str) -> str:
    """Every message of one rule of a plan, a page at a time."""
    after = request.args.get("after", "")
    page = reason_page(
        web().store,
        ref,
        request.args.get("reason", ""),
        after_id=int(after) if after.isdigit() else None,
        limit=ITEMS_PAGE,
    )
    return render_template("plan_items.html", page=page)


@blueprint.post("/plans/<ref>/approve")
@requires(Permission.PLAN_APPROVE)
def approve(ref: str) -> Response:
    context = web()
    try:
        state = approve_plan(
            context.store,
            ref,
            context.policy(),
            actor=g.acting.name,
            now=context.now(),
            comment=request.form.get("comment", "").strip(),
        )
    except PermissionDenied:
        raise
    except MailhygieneError as error:
        flash(str(error), "error")
    else:
        flash(f"Plan {state.ref} approved by {', '.join(state.approvers)}.", "ok")
    return redirect(url_for("plans.review", ref=ref))


@blueprint.post("/plans/<ref>/reject")
@requires(Permission.PLAN_APPROVE)
def reject(ref: str) -> Response:
    context = web()
    comment = request.form.get("comment", "").strip()
    try:
        if not comment:
            raise InputError("say why the plan is rejected (the comment is kept in the audit log)")
        reject_plan(context.store, ref, actor=g.acting.name, now=context.now(), comment=comment)
    except PermissionDenied:
        raise
    except MailhygieneError as error:
        flash(str(error), "error")
    else:
        flash(f"Plan {ref} rejected; it can never be executed.", "ok")
    return redirect(url_for("plans.review", ref=ref))


@blueprint.post("/plans/<ref>/execute")
@requires(Permission.PLAN_EXECUTE)
def execute(ref: str) -> Response:
    """Start executing an approved plan (or resume an interrupted one) in the background."""
    context = web()
    try:
        _start(context, ref, g.acting.name)
    except PermissionDenied:
        raise
    except MailhygieneError as error:
        flash(str(error), "error")
    else:
        flash(
            f"Executing plan {ref}: each message is re-verified on the server first. "
            "Reload this page to follow it.",
            "ok",
        )
    return redirect(url_for("plans.review", ref=ref))


def _start(context: WebContext, ref: str, actor: str) -> None:
    summary = stored_summary(context.store, ref)
    if summary.status not in ("approved", "executing"):
        # why: only an approved plan may touch the server (execute_plan refuses it too)
        raise InputError(f"plan {ref} is {summary.status}; only an approved plan can be executed")
    with context.lock:
        running = context.executions.get(ref)
        if running is not None and not running.done():
            raise InputError(f"plan {ref} is being executed already; reload to follow it")
        context.executions[ref] = context.executor.submit(
            _run, context, ref, summary.account, actor, context.now()
        )


def _run(context: WebContext, ref: str, account: str, actor: str, now: datetime) -> ExecutionReport:
    try:
        with context.server_for(account) as server:
            return execute_plan(context.store, server, context.policy(), ref, actor=actor, now=now)
    except MailhygieneError:
        raise
    except Exception:
        log.exception("executing plan %s failed", ref)
        raise


def _execution_state(context: WebContext, ref: str) -> dict[str, Any] | None:
    """What the background execution of ``ref`` in this process is doing, if any."""
    with context.lock:
        future = context.executions.get(ref)
    if future is None:
        return None
    if not future.done():
        return {"running": True}
    error = future.exception()
    if error is None:
        return {"running": False, "report": asdict(future.result())}
    message = (
        str(error)
        if isinstance(error, MailhygieneError)
        else "an unexpected error (written to the server log)"
    )
    return {"running": False, "error": message}


__all__ = ["blueprint"]
