"""Support staff's pages: search, a conversation, one message, linking to a case."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from mailhygiene.cases.mirror import case_keyword_prefix
from mailhygiene.conversations import (
    LinkOutcome,
    link_thread,
    message_view,
    open_case_and_link,
    open_case_refs,
    search_page,
    thread_page,
)
from mailhygiene.errors import InputError, MailhygieneError, PermissionDenied
from mailhygiene.roles import Permission
from mailhygiene.web.app import can, safe_path, web
from mailhygiene.web.auth import also_requires, requires

PAGE = 50
"""Messages per page of search results and conversations."""

blueprint = Blueprint("mail", __name__)


@blueprint.get("/search")
@requires(Permission.READ)
def search() -> tuple[str, int]:
    """Search the index with the query language of ``mailhygiene search``."""
    context = web()
    text = request.args.get("q", "").strip()
    offset = _offset()
    if not text:
        return render_template("search.html", q="", page=None, error=None), 200
    try:
        page = search_page(
            context.store,
            context.policy(),
            text,
            limit=PAGE,
            offset=offset,
            include_restricted=can(Permission.RESTRICTED_READ),
        )
    except InputError as error:
        return render_template("search.html", q=text, page=None, error=str(error)), 400
    return render_template("search.html", q=text, page=page, error=None), 200


@blueprint.get("/thread/<thread_id>")
@requires(Permission.READ)
def thread(thread_id: str) -> str:
    """A conversation across folders and accounts, each message with its verdict."""
    context = web()
    page = thread_page(
        context.store,
        context.policy(),
        thread_id,
        now=context.now(),
        limit=PAGE,
        offset=_offset(),
        include_restricted=can(Permission.RESTRICTED_READ),
    )
    return render_template(
        "thread.html",
        page=page,
        target=page.messages[0].id if page.messages else None,
        open_refs=open_case_refs(context.store),
        back=request.full_path.rstrip("?"),
        keyword=case_keyword_prefix(context.policy()) + "REF",
    )


@blueprint.get("/message/<int:row_id>")
@requires(Permission.READ)
def message(row_id: int) -> str:
    """One message: headers, why it is kept or when it goes, and its text from the server."""
    context = web()
    view = message_view(
        context.store,
        context.policy(),
        context.server_for,
        row_id,
        now=context.now(),
        include_restricted=can(Permission.RESTRICTED_READ),
    )
    return render_template(
        "message.html",
        view=view,
        open_refs=open_case_refs(context.store),
        back=request.full_path.rstrip("?"),
        keyword=case_keyword_prefix(context.policy()) + "REF",
    )


@blueprint.post("/link")
@requires(Permission.TAG)
def link() -> Response:
    """Link the conversation of a message to an open case; mirror the keyword."""
    context = web()
    back = _back()
    try:
        outcome = link_thread(
            context.store,
            context.policy(),
            context.server_for,
            row_id=_row(),
            ref=request.form.get("ref", ""),
            actor=_actor(),
            now=context.now(),
            confirmed=request.form.get("confirm") == "yes",
            include_restricted=can(Permission.RESTRICTED_READ),
        )
    except PermissionDenied:
        raise
    except MailhygieneError as error:
        flash(str(error), "error")
        return redirect(back)
    _report(outcome)
    return redirect(back)


@blueprint.post("/cases/open")
@requires(Permission.CASE_MANAGE)
def open_case() -> Response:
    """Open a new case and link the conversation of a message to it."""
    also_requires(Permission.TAG)
    context = web()
    back = _back()
    try:
        outcome = open_case_and_link(
            context.store,
            context.policy(),
            context.server_for,
            row_id=_row(),
            ref=request.form.get("ref", ""),
            title=request.form.get("title", ""),
            actor=_actor(),
            now=context.now(),
            confirmed=request.form.get("confirm") == "yes",
            include_restricted=can(Permission.RESTRICTED_READ),
        )
    except PermissionDenied:
        raise
    except MailhygieneError as error:
        flash(str(error), "error")
        return redirect(back)
    _report(outcome, opened=True)
    return redirect(back)


def _report(outcome: LinkOutcome, *, opened: bool = False) -> None:
    keyword = outcome.keyword or "the case keyword"
    head = f"Opened {outcome.ref}. " if opened else ""
    if outcome.linked:
        flash(
            f"{head}Linked the conversation ({outcome.messages} message(s)) to {outcome.ref}.",
            "ok",
        )
    else:
        flash(f"{head}The conversation was already linked to {outcome.ref}.", "ok")
    if outcome.marked:
        flash(f"{keyword} set on {outcome.marked} message(s) on the mail server.", "ok")
    if outcome.pending or outcome.problems:
        flash(
            f"{keyword} could not be set on every message on the mail server yet; the mail "
            "is protected by the link anyway, and the next sync or scheduled run sets it. "
            + "; ".join(outcome.problems),
            "warning",
        )


def _actor() -> str:
    return str(g.acting.name)


def _row() -> int:
    text = request.form.get("row", "")
    if not text.isdigit():
        raise InputError("no message was chosen; open the conversation again")
    return int(text)


def _offset() -> int:
    text = request.args.get("offset", "0")
    return min(int(text), 10_000_000) if text.isdigit() else 0


def _back() -> str:
    return safe_path(request.form.get("back"), url_for("mail.search"))


__all__ = ["PAGE", "blueprint"]
