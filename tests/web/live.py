"""The web page on a real Dovecot mailbox: mail delivered, synced and threaded, users with
passwords, the app built as ``mailhygiene serve`` builds it (``ImapMailServer`` per account).

Import the fixture where needed::

    from tests.web.live import live_fixture  # noqa: F401

and ask for ``live``. ``live.serve()`` also runs the app in waitress on a free loopback
port (for the browser tests).
"""

from __future__ import annotations

import imaplib
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
import waitress
from flask import Flask

from mailhygiene.cases.service import link_new_mail, open_case
from mailhygiene.config.settings import AccountSettings, PasswordSource, WebSettings
from mailhygiene.devtools import ImapAccount
from mailhygiene.devtools.mailbox import append_messages, message_bytes
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.policy import Policy
from mailhygiene.purge.plan import plan_purge
from mailhygiene.store.session import Store
from mailhygiene.web import WebContext, create_app
from mailhygiene.web.app import WebMailServer
from tests.web.conftest import SECRET

ACCOUNT = "support"
WHEN = datetime(2025, 6, 2, 9, tzinfo=UTC)
CASE = "REK-2025-0042"
HTML = (
    "<html><head><style>p{color:red}</style><script>alert('x')</script></head><body>"
    "<p>Hej, lampan &auml;r trasig.</p><a href='https://kund.example.se/order'>Order</a>"
    "</body></html>"
)


@dataclass
class Live:
    """A synced mailbox and the web app over it."""

    account: ImapAccount
    settings: AccountSettings
    store: Store
    policy: Policy
    app: Flask
    context: WebContext
    servers: list[object] = field(default_factory=list)

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.account.host, self.account.port)
        conn.login(self.account.username, self.account.password)
        return conn

    def server_flags(self, folder: str) -> dict[str, set[str]]:
        """Message-ID → flags of every message in ``folder``, read straight from the server."""
        conn = self.imap()
        try:
            conn.select(f'"{folder}"', readonly=True)
            _typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        finally:
            conn.logout()
        found: dict[str, set[str]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
            mid = re.search(rb"<([^>]+)>", item[1])
            if flags and mid:
                found[mid.group(1).decode()] = set(flags.group(1).decode().split())
        return found

    def plan(self, actor: str) -> str:
        summary = plan_purge(
            self.store, self.policy, account=ACCOUNT, now=self.context.now(), actor=actor
        )
        assert summary.ref is not None
        return summary.ref

    def serve(self) -> str:
        """Run the app in waitress on 127.0.0.1 (a free port); returns its base URL."""
        server = waitress.create_server(self.app, host="127.0.0.1", port=0, threads=4)
        thread = threading.Thread(target=server.run, name="waitress", daemon=True)
        thread.start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]

    def close(self) -> None:
        for server in self.servers:
            server.close()  # type: ignore[attr-defined]
        self.context.executor.shutdown(wait=True)


def _deliver(account: ImapAccount) -> None:
    def mail(subject: str, mid: str, refs: tuple[str, ...] = (), body: str = "Hej!\n") -> bytes:
        return message_bytes(
            subject=subject,
            from_="Anna Svensson <anna@kund.example.se>",
            date=WHEN,
            message_id=f"<{mid}>",
            in_reply_to=f"<{refs[-1]}>" if refs else None,
            references=[f"<{r}>" for r in refs],
            body=body,
        )

    html = mail("Trasig lampa", "c0@kund.example.se").replace(
        b"Content-Type: text/plain; charset=utf-8", b"Content-Type: text/html; charset=utf-8"
    )
    html = html.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + HTML.encode() + b"\r\n"
    inbox = [
        html,
        mail("SV: Trasig lampa", "c2@kund.example.se", ("c0@kund.example.se", "c1@promix.example")),
        mail("Nyhetsbrev vecka 23", "n1@nyheter.example"),
        mail("Nyhetsbrev vecka 24", "n2@nyheter.example"),
    ]
    sent = [mail("SV: Trasig lampa", "c1@promix.example", ("c0@kund.example.se",))]
    for folder, messages in (("INBOX", inbox), ("Sent", sent)):
        append_messages(
            account.host,
            account.port,
            account.username,
            account.password,
            folder,
            [(raw, (), WHEN) for raw in messages],
        )


@pytest.fixture(name="live")
def live_fixture(
    mailbox: ImapAccount, web_store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Live]:
    """The conversation "Trasig lampa" (INBOX + Sent) and two newsletters, all a year old
    at ``now``; the case REK-2025-0042 is open but nothing is linked to it yet. Plans of
    more than one message are bulk (four eyes)."""
    monkeypatch.setenv("MH_WEB_TEST_PASSWORD", mailbox.password)
    _deliver(mailbox)
    settings = AccountSettings(
        name=ACCOUNT,
        host=mailbox.host,
        port=mailbox.port,
        security="none",
        username=mailbox.username,
        password=PasswordSource(env="MH_WEB_TEST_PASSWORD"),
    )
    now = WHEN + timedelta(days=365)
    policy = replace(Policy(), auto_approve_limit=1)
    request = SyncRequest(account=ACCOUNT, host=settings.host, username=settings.username)
    with ImapMailServer(settings, mailbox.password) as server:
        sync_account(web_store, server, request, now=now)
    link_new_mail(web_store, policy, ACCOUNT, now=now, actor="test")
    open_case(web_store, policy, ref=CASE, title="Trasig lampa", actor="bob", now=now)

    def server_for(account: str) -> AbstractContextManager[WebMailServer]:
        assert account == ACCOUNT
        return ImapMailServer(settings, mailbox.password)

    context = WebContext(
        store=web_store,
        policy=lambda: policy,
        server_for=server_for,
        accounts=[ACCOUNT],
        settings=WebSettings(secure_cookie=False),
        clock=lambda: now,
    )
    live = Live(mailbox, settings, web_store, policy, create_app(context, secret=SECRET), context)
    try:
        yield live
    finally:
        live.close()
