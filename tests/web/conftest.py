"""Fixtures for the web page: a store with users and an index, the app, logged-in clients.

The index is written with the store's own insert (what a sync writes), so the view tests
need no IMAP server; the one server the views reach here is :class:`FakeServer`, which
serves message bytes and records keyword changes. Tests against a real Dovecot (body
fetch, keyword mirroring, execution) are in ``test_views_dovecot.py`` and ``test_e2e.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from mailhygiene import users as users_module
from mailhygiene.cases.service import link_new_mail
from mailhygiene.config.settings import WebSettings
from mailhygiene.mailbox import FlagUpdate, FolderStatus, IndexedMessage
from mailhygiene.policy import Policy
from mailhygiene.roles import Role
from mailhygiene.store import index_queries
from mailhygiene.store.session import Store, open_store
from mailhygiene.users import add_user, set_password
from mailhygiene.web import WebContext, create_app

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"
ACCOUNT = "support"
USERS = {"alice": Role.ADMIN, "bob": Role.SUPPORT, "maria": Role.MANAGER, "mats": Role.MANAGER}


@dataclass
class Clock:
    """A clock the tests move."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class FakeServer:
    """A mail server holding raw messages per (folder, uid); records STORE +FLAGS."""

    messages: dict[tuple[str, int], bytes] = field(default_factory=dict)
    flags: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    uidvalidity: int = 1
    selected: str = ""
    opened: int = 0

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus:
        self.selected = folder
        return FolderStatus(folder, self.uidvalidity, 1000, 0, None)

    def fetch_message(self, uid: int) -> bytes | None:
        return self.messages.get((self.selected, uid))

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> set[int]:
        for uid in uids:
            self.flags.setdefault((self.selected, uid), set()).update(flags)
        return set()

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        for uid in uids:
            self.flags.setdefault((self.selected, uid), set()).difference_update(flags)

    def fetch_flags(
        self,
        uids: Sequence[int] | None = None,
        *,
        changed_since: int | None = None,
        below_uid: int | None = None,
    ) -> list[FlagUpdate]:
        return [
            FlagUpdate(uid, tuple(sorted(self.flags.get((self.selected, uid), set()))), None)
            for uid in uids or ()
        ]

    @contextmanager
    def connected(self, account: str) -> Iterator[FakeServer]:
        self.opened += 1
        yield self


def indexed(
    uid: int,
    *,
    subject: str,
    message_id: str,
    when: datetime,
    sender: str = "anna@kund.example.se",
    references: tuple[str, ...] = (),
    size: int = 100,
    flags: tuple[str, ...] = (),
) -> IndexedMessage:
    return IndexedMessage(
        uid=uid,
        flags=flags,
        internal_date=when,
        size=size,
        modseq=None,
        message_id=message_id,
        in_reply_to=references[-1] if references else "",
        references=references,
        thread_index="",
        thread_topic="",
        subject=subject,
        from_addr=sender,
        from_name="",
        to_addrs=("support@promix.example",),
        cc_addrs=(),
        reply_to=(),
        date_header=when,
        date_raw=None,
    )


def put_messages(store: Store, folder: str, messages: Sequence[IndexedMessage]) -> None:
    """Write messages into the index as a sync would (folder UIDVALIDITY 1)."""
    with store.transaction() as session:
        account_id = index_queries.ensure_account(session, ACCOUNT, "127.0.0.1", "u", NOW)
        state = index_queries.ensure_folder(session, account_id, folder)
        if state.uidvalidity is None:
            index_queries.reset_folder(session, state.id, 1)
        index_queries.insert_messages(session, state.id, messages, NOW)


def message_row(store: Store, message_id: str) -> int:
    from sqlalchemy import select

    from mailhygiene.store.models import Message

    with store.transaction() as session:
        row = session.scalar(select(Message.id).where(Message.message_id == message_id))
    assert row is not None
    return row


@dataclass
class Site:
    """The app under test and what it runs on."""

    app: Flask
    store: Store
    policy: Policy
    clock: Clock
    server: FakeServer
    context: WebContext

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def login(self, name: str, password: str = PASSWORD) -> FlaskClient:
        client = self.client()
        response = login(client, name, password)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


def login(client: FlaskClient, name: str, password: str) -> object:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(page.get_data(True))},
    )


def post(client: FlaskClient, page_url: str, url: str, data: dict[str, str]) -> object:
    """Open ``page_url`` (for its CSRF token), then post ``data`` to ``url``."""
    token = csrf_of(client.get(page_url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with tiny costs: the real ones take ~0.4 s a hash on a busy test machine."""
    quick = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    dummy = quick.hash("a password nobody has")
    monkeypatch.setattr(users_module, "_hasher", lambda: quick)
    monkeypatch.setattr(users_module, "_dummy_hash", lambda: dummy)


@pytest.fixture
def web_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'web.db'}")
    for name, role in USERS.items():
        add_user(store, name=name, role=role, actor="alice", now=NOW)
        set_password(store, name=name, password=PASSWORD, actor="alice", now=NOW)
    yield store
    store.close()


@pytest.fixture
def make_site(web_store: Store) -> Callable[..., Site]:
    def make(**web_settings: object) -> Site:
        policy = Policy()
        clock = Clock()
        server = FakeServer()
        server_for: Callable[[str], AbstractContextManager[FakeServer]] = server.connected
        context = WebContext(
            store=web_store,
            policy=lambda: policy,
            server_for=server_for,  # type: ignore[arg-type]
            accounts=[ACCOUNT],
            settings=WebSettings(**{"secure_cookie": False, **web_settings}),  # type: ignore[arg-type]
            clock=clock,
        )
        return Site(create_app(context, secret=SECRET), web_store, policy, clock, server, context)

    return make


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


@pytest.fixture
def conversation(site: Site) -> Site:
    """A complaint conversation in INBOX and Sent, and an unrelated message."""
    old = NOW - timedelta(days=200)
    put_messages(
        site.store,
        "INBOX",
        [
            indexed(1, subject="Trasig lampa", message_id="c0@kund.example.se", when=old),
            indexed(
                2,
                subject="SV: Trasig lampa",
                message_id="c2@kund.example.se",
                when=old + timedelta(days=2),
                references=("c0@kund.example.se", "c1@promix.example"),
            ),
            indexed(3, subject="Fråga om leverans", message_id="q0@kund.example.se", when=NOW),
        ],
    )
    put_messages(
        site.store,
        "Sent",
        [
            indexed(
                1,
                subject="SV: Trasig lampa",
                message_id="c1@promix.example",
                when=old + timedelta(days=1),
                sender="support@promix.example",
                references=("c0@kund.example.se",),
            )
        ],
    )
    link_new_mail(site.store, site.policy, ACCOUNT, now=NOW, actor="test")
    return site
