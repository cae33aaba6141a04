"""The start page: the mailbox over time, purges, cases, holds, plans, requests, last run."""

from __future__ import annotations

from flask import Blueprint, render_template

from mailhygiene.overview import dashboard
from mailhygiene.roles import Permission
from mailhygiene.web.app import web
from mailhygiene.web.auth import requires

blueprint = Blueprint("dashboard", __name__)


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    context = web()
    policy = context.policy()
    figures = dashboard(context.store, policy, now=context.now())
    largest = max((point.bytes for point in figures.size), default=0)
    return render_template(
        "dashboard.html",
        figures=figures,
        largest=largest,
        stale_after_hours=36,
        auto_approve_limit=policy.auto_approve_limit,
    )


__all__ = ["blueprint"]
