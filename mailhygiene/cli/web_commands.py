"""``serve``: the web page for support staff and managers."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import click

from mailhygiene.cli.auth import requires
from mailhygiene.cli.context import app
from mailhygiene.config.rules import load_rules
from mailhygiene.config.secrets import resolve_password
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.roles import Permission

if TYPE_CHECKING:
    from mailhygiene.web.app import WebMailServer


@click.command("serve")
@requires(Permission.READ)
@click.option("--listen", metavar="ADDRESS", help="Listen on this address ([web] listen).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port ([web] port).")
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Requests served at once.",
)
@click.pass_context
def serve(ctx: click.Context, listen: str | None, port: int | None, threads: int) -> None:
    """Run the web page: search and conversations, linking them to complaint cases,
    reviewing and approving purge plans, the quarantine and a dashboard.

    Everyone logs in as themselves: with the password an admin sets with 'mailhygiene
    user passwd', or through a reverse proxy listed in [web] trusted_proxies that sends
    X-Remote-User. Each page checks the person's own role, as each command does. Put it
    behind a TLS reverse proxy; the session secret comes from [web] secret_env or
    secret_file (without one, sessions end when the server stops).

    Example: mailhygiene serve --listen 127.0.0.1 --port 8080
    """
    # why here: Flask and waitress load only for this command, not for every other one
    import waitress

    from mailhygiene.web import PolicySource, WebContext, create_app, session_secret

    obj = app(ctx)
    settings = obj.settings
    web_settings = settings.web
    secret, ephemeral = session_secret(web_settings)
    if ephemeral:
        click.echo(
            "warning: no [web] secret_env or secret_file is set; using a secret made up for "
            "this run, so everyone must log in again after a restart",
            err=True,
        )
    if not web_settings.secure_cookie:
        click.echo(
            "warning: [web] secure_cookie = false: the session cookie also travels over "
            "plain HTTP; use this only on loopback or behind a TLS proxy on the same host",
            err=True,
        )
    policy = PolicySource(settings.rules_path, load_rules)
    policy()  # a broken rules file fails here, with its key path, not on the first page

    def server_for(account: str) -> AbstractContextManager[WebMailServer]:
        chosen = settings.account(account)
        return ImapMailServer(chosen, resolve_password(chosen))

    context = WebContext(
        store=obj.store,
        policy=policy,
        server_for=server_for,
        accounts=sorted(settings.accounts),
        settings=web_settings,
    )
    web_app = create_app(context, secret=secret)
    host = listen or web_settings.listen
    bound = port or web_settings.port
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Serving mailhygiene on http://{shown}:{bound}/ (Ctrl-C stops it)", err=True)
    try:
        waitress.serve(web_app, host=host, port=bound, threads=threads, ident="mailhygiene")
    finally:
        context.executor.shutdown(wait=True)


COMMANDS = [serve]
