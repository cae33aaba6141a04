"""Complaint cases against a real Dovecot, on SQLite and PostgreSQL: threads across folders,
Outlook Thread-Index threads, keywords set and removed by other IMAP clients, late
replies, merged cases, mirroring and untagging."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cases import service
from mailhygiene.cases.linking import LinkResult, ReviewKind, link_new_mail
from mailhygiene.cases.mirror import KeywordServer, MirrorResult, mirror_keywords
from mailhygiene.cases.service import link_after_sync
from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount
from mailhygiene.devtools.mailbox import append_messages, message_bytes, outlook_thread_index
from mailhygiene.errors import ConnectError, InputError, NotFoundError
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.policy import Action, Duration, MessageFacts, Policy, ReasonKind, Verdict, decide
from mailhygiene.scheduled import scheduled_run
from mailhygiene.store import facts_queries
from mailhygiene.store.models import AuditEvent, Case, CaseThread, Message
from mailhygiene.store.session import Store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

pytestmark = pytest.mark.dovecot

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
DAY = timedelta(days=1)
CUSTOMER = "Anna Svensson <anna@kund.example.se>"
STAFF = "PROMIX Kundtjänst <support@promix.example>"


@dataclass
class World:
    """A Dovecot mailbox, its index (SQLite or PostgreSQL) and the PROMIX case policy."""

    account: ImapAccount
    settings: AccountSettings
    store: Store
    policy: Policy = field(
        default_factory=lambda: Policy(default_keep=Duration.parse("180d"), source_hash="t")
    )

    def server(self) -> ImapMailServer:
        return ImapMailServer(self.settings, self.account.password)

    def deliver(
        self,
        folder: str,
        *,
        subject: str,
        message_id: str,
        when: datetime,
        sender: str = CUSTOMER,
        to: str = STAFF,
        refs: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
        flags: Sequence[str] = (),
    ) -> None:
        raw = message_bytes(
            subject=subject,
            from_=sender,
            to=to,
            date=when,
            message_id=f"<{message_id}>",
            in_reply_to=f"<{refs[-1]}>" if refs else None,
            references=[f"<{r}>" for r in refs],
            headers=headers,
        )
        acct = self.account
        append_messages(
            acct.host, acct.port, acct.username, acct.password, folder, [(raw, tuple(flags), when)]
        )

    def sync(self, now: datetime = NOW) -> None:
        request = SyncRequest(
            account="support", host=self.settings.host, username=self.settings.username
        )
        with self.server() as server:
            sync_account(self.store, server, request, now=now)

    def link(self, now: datetime = NOW) -> LinkResult:
        return link_new_mail(self.store, self.policy, "support", now=now, actor="scheduler")

    def sync_and_link(self, now: datetime = NOW) -> LinkResult:
        self.sync(now)
        return self.link(now)

    def mirror(self, now: datetime = NOW) -> MirrorResult:
        with self.server() as server:
            return mirror_keywords(
                self.store, server, self.policy, "support", now=now, actor="scheduler"
            )

    def server_for(self, account: str) -> AbstractContextManager[KeywordServer]:
        assert account == "support"
        return self.server()

    def imap_store(self, folder: str, message_id: str, op: str, keyword: str) -> None:
        """Another IMAP client (a person in Thunderbird) changes a message's keywords."""
        conn = imaplib.IMAP4(self.account.host, self.account.port)
        conn.login(self.account.username, self.account.password)
        conn.select(f'"{folder}"')
        _typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", message_id)
        uids = data[0].decode().split()
        assert len(uids) == 1, (folder, message_id, uids)
        conn.uid("STORE", uids[0], op, f"({keyword})")
        conn.logout()

    def server_keywords(self, folder: str) -> dict[str, set[str]]:
        """Message-ID → flags, as the server has them now."""
        conn = imaplib.IMAP4(self.account.host, self.account.port)
        conn.login(self.account.username, self.account.password)
        conn.select(f'"{folder}"', readonly=True)
        _typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        conn.logout()
        found: dict[str, set[str]] = {}
        for item in data:
            if isinstance(item, tuple):
                head, body = item
                flags = head.decode().split("FLAGS (", 1)[1].split(")", 1)[0].split()
                mid = body.decode().split("<", 1)[1].split(">", 1)[0]
                found[mid] = set(flags)
        return found

    def thread_of(self, message_id: str) -> str:
        with self.store.transaction() as session:
            threads = set(
                session.scalars(
                    select(Message.thread_id).where(Message.message_id == message_id.lower())
                )
            )
        assert len(threads) == 1, threads
        assert None not in threads, threads
        return str(threads.pop())

    def facts(self, message_id: str) -> MessageFacts:
        """The message's policy facts, as the purge planner loads them."""
        with self.store.transaction() as session:
            rows = list(
                facts_queries.iter_indexed(session, account="support", holds_for=lambda _row: ())
            )
        found = [row.facts for row in rows if row.message_id == message_id.lower()]
        assert len(found) == 1, f"{message_id}: {len(found)} rows"
        return found[0]

    def cases_of(self, message_id: str) -> set[str]:
        """Case refs protecting the message."""
        return {link.ref for link in self.facts(message_id).cases}

    def verdict(self, message_id: str, now: datetime = NOW) -> Verdict:
        return decide(self.facts(message_id), self.policy, now)


@pytest.fixture
def world(mailbox: ImapAccount, store: Store) -> Iterator[World]:
    settings = AccountSettings(
        name="support",
        host=mailbox.host,
        port=mailbox.port,
        security="none",
        username=mailbox.username,
        password=PasswordSource(env="UNUSED"),
    )
    return World(mailbox, settings, store)


def complaint_over_inbox_and_sent(
    world: World, ref: str = "REK-2025-0042", prefix: str = "c"
) -> list[str]:
    """A customer complaint; the replies drop the case number; staff replies are in Sent."""
    t0 = NOW - 20 * DAY
    ids = [
        f"{prefix}{i}@kund.example.se" if i % 2 == 0 else f"{prefix}{i}@promix.example"
        for i in range(4)
    ]
    world.deliver("INBOX", subject=f"Reklamation {ref}: trasig lampa", message_id=ids[0], when=t0)
    world.deliver(
        "Sent",
        subject=f"SV: Reklamation {ref}: trasig lampa",
        message_id=ids[1],
        when=t0 + DAY,
        sender=STAFF,
        to=CUSTOMER,
        refs=ids[:1],
        flags=["\\Seen"],
    )
    world.deliver(
        "INBOX", subject="SV: trasig lampa", message_id=ids[2], when=t0 + 2 * DAY, refs=ids[:2]
    )
    world.deliver(
        "Sent",
        subject="SV: trasig lampa",
        message_id=ids[3],
        when=t0 + 3 * DAY,
        sender=STAFF,
        to=CUSTOMER,
        refs=ids[:3],
        flags=["\\Seen"],
    )
    return ids


def test_complaint_thread_over_inbox_and_sent_is_linked_by_its_case_number(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.deliver(
        "INBOX", subject="Fråga om faktura 991", message_id="other@x.example", when=NOW - 5 * DAY
    )
    result = world.sync_and_link()

    assert result.threaded == 5
    assert result.linked == 1
    assert result.created_cases == ["REK-2025-0042"]
    assert result.by_how == {"pattern": 1}
    thread = world.thread_of(ids[0])
    assert {world.thread_of(m) for m in ids} == {thread}
    assert world.thread_of("other@x.example") != thread
    for message_id in ids:
        assert world.cases_of(message_id) == {"REK-2025-0042"}
        verdict = world.verdict(message_id, NOW + 400 * DAY)
        assert verdict.action is Action.KEEP
        assert verdict.reasons[0].kind is ReasonKind.CASE_OPEN
    assert world.cases_of("other@x.example") == set()

    detail = service.show_case(world.store, world.policy, ref="rek-2025-0042")
    assert detail.case.created_how == "pattern"
    assert detail.case.messages == 4
    assert detail.folders == {"support/INBOX": 2, "support/Sent": 2}
    assert [t.how for t in detail.threads] == ["pattern"]
    assert detail.threads[0].linked_by == "scheduler"

    again = world.link()  # idempotent: nothing new, nothing linked twice
    assert again.threaded == 0
    assert again.linked == 0
    assert again.created_cases == []


def test_outlook_thread_with_only_thread_index_is_one_linked_thread(world: World) -> None:
    t0 = NOW - 10 * DAY
    guid = bytes(range(16))
    times = [t0, t0 + DAY, t0 + 2 * DAY]
    ids = [
        "AM0PR07MB1@eurprd07.outlook.example",
        "DB8PR02MB2@promix.example",
        "HE1PR05MB3@eurprd07.outlook.example",
    ]
    subjects = ["Reklamation REK-2025-0043: fel färg", "SV: fel färg", "SV: fel färg"]
    for index, (message_id, subject) in enumerate(zip(ids, subjects, strict=True)):
        staff = index == 1
        world.deliver(
            "Sent" if staff else "INBOX",
            subject=subject,
            message_id=message_id,
            when=times[index],
            sender=STAFF if staff else CUSTOMER,
            headers=[
                ("Thread-Topic", "fel färg"),
                ("Thread-Index", outlook_thread_index(t0, guid, times[1 : index + 1])),
            ],
        )
    # Same subject, no Thread-Index and no References, but months away: not joined.
    world.deliver(
        "INBOX", subject="fel färg", message_id="unrelated@x.example", when=t0 - 120 * DAY
    )
    result = world.sync_and_link()

    assert result.created_cases == ["REK-2025-0043"]
    thread = world.thread_of(ids[0])
    assert {world.thread_of(m) for m in ids} == {thread}
    assert world.thread_of("unrelated@x.example") != thread
    assert all(world.cases_of(m) == {"REK-2025-0043"} for m in ids)


def test_keyword_set_in_another_client_links_on_next_sync(world: World) -> None:
    world.deliver(
        "INBOX",
        subject="Min beställning kom aldrig",
        message_id="k1@kund.example.se",
        when=NOW - 3 * DAY,
    )
    world.deliver(
        "INBOX",
        subject="SV: Min beställning kom aldrig",
        message_id="k2@kund.example.se",
        when=NOW - 2 * DAY,
        refs=["k1@kund.example.se"],
    )
    world.deliver(
        "INBOX",
        subject="Reklamation REK-2025-0050: trasig",
        message_id="n1@x.example",
        when=NOW - 2 * DAY,
    )
    world.deliver("INBOX", subject="Ny fråga", message_id="p1@x.example", when=NOW - 2 * DAY)
    world.policy = Policy(
        default_keep=Duration.parse("180d"), case_auto_create=False, source_hash="t"
    )
    first = world.sync_and_link()
    assert first.linked == 0  # the number names no case, and the policy creates none
    assert [(i.kind, i.case_ref) for i in first.review] == [
        (ReviewKind.UNKNOWN_CASE, "REK-2025-0050")
    ]

    world.imap_store("INBOX", "k2@kund.example.se", "+FLAGS", "$Reklamation")
    world.imap_store("INBOX", "n1@x.example", "+FLAGS", "$Reklamation")
    world.imap_store("INBOX", "p1@x.example", "+FLAGS", "$Reklamation_REK-2025-0099")
    service.open_case(
        world.store, world.policy, ref="REK-2025-0099", title="", actor="bob", now=NOW
    )
    result = world.sync_and_link(NOW + DAY)

    assert result.linked == 3
    # No number in the thread: an untriaged case a person must name.
    untriaged = world.cases_of("k1@kund.example.se")
    assert len(untriaged) == 1
    assert untriaged.pop().startswith("UNTRIAGED-20260303-")
    assert [i.kind for i in result.review] == [ReviewKind.UNTRIAGED] * 2
    # The plain keyword on a thread whose subject names a case: that case — but it does
    # not exist and may not be created, so untriaged too, and the review says so.
    assert next(iter(world.cases_of("n1@x.example"))).startswith("UNTRIAGED-")
    assert any("REK-2025-0050, which is not a case" in i.detail for i in result.review)
    # The per-case keyword names its case.
    assert world.cases_of("p1@x.example") == {"REK-2025-0099"}

    name = next(iter(world.cases_of("k1@kund.example.se")))
    service.rename_case(
        world.store, world.policy, ref=name, new_ref="REK-2025-0051", actor="bob", now=NOW + DAY
    )
    assert world.cases_of("k2@kund.example.se") == {"REK-2025-0051"}
    old = service.show_case(world.store, world.policy, ref=name)
    assert old.case.status == "closed"
    assert old.case.close_reason == "renamed to REK-2025-0051"
    assert world.link(NOW + 2 * DAY).linked == 0  # the keyword does not link it twice


def test_renaming_a_mirrored_case_moves_its_keyword_and_the_old_one_keeps_nothing(
    world: World,
) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    world.mirror()
    service.rename_case(
        world.store,
        world.policy,
        ref="REK-2025-0042",
        new_ref="REK-2025-0043",
        actor="bob",
        now=NOW,
        server_for=world.server_for,
    )
    assert world.mirror().marked == 4
    inbox, sent = world.server_keywords("INBOX"), world.server_keywords("Sent")
    for flags in (*(inbox[m] for m in ids if m in inbox), *(sent[m] for m in ids if m in sent)):
        assert "$Reklamation_REK-2025-0043" in flags
        assert "$Reklamation_REK-2025-0042" not in flags
    service.close_case(
        world.store, world.policy, ref="REK-2025-0043", reason="klar", actor="bob", now=NOW
    )
    world.sync()
    verdict = world.verdict(ids[0], NOW + 400 * DAY)
    assert verdict.action is Action.PURGE, verdict.explain()


def test_mirroring_marks_every_message_in_every_folder(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    mirrored = world.mirror()
    assert mirrored.marked == 4
    assert mirrored.complete
    inbox, sent = world.server_keywords("INBOX"), world.server_keywords("Sent")
    # the per-case keyword, never the plain one: that is a person's mark (see policy.decide)
    assert all(inbox[m] >= {"$Reklamation_REK-2025-0042"} for m in ids if m in inbox)
    assert all(sent[m] >= {"$Reklamation_REK-2025-0042"} for m in ids if m in sent)
    assert all("$Reklamation" not in flags for flags in [*inbox.values(), *sent.values()])
    assert world.mirror().marked == 0  # nothing left to do
    world.sync()  # the server's copy of our change reads back as unchanged
    assert world.link().review == []


class Unreachable:
    """A server that drops every connection (the IMAP side temporarily down)."""

    def select(self, folder: str, *, readonly: bool = True):  # type: ignore[no-untyped-def]
        raise ConnectError("connection to the server was lost")

    def add_flags(self, *args: object, **kw: object) -> set[int]:
        raise AssertionError("not reached")

    def remove_flags(self, *args: object, **kw: object) -> None:
        raise AssertionError("not reached")

    def fetch_flags(self, *args: object, **kw: object) -> list[object]:
        raise AssertionError("not reached")


def test_unreachable_server_loses_nothing_and_mirroring_catches_up(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    down = mirror_keywords(
        world.store, Unreachable(), world.policy, "support", now=NOW, actor="scheduler"
    )
    assert down.marked == 0
    assert down.pending == 4
    assert "lost" in down.folders[0].problem
    assert all(world.cases_of(m) == {"REK-2025-0042"} for m in ids)  # the DB still protects
    assert world.mirror().marked == 4


def test_keyword_removed_in_a_client_is_reported_and_still_protected(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    world.mirror()
    world.imap_store("INBOX", ids[2], "-FLAGS", "$Reklamation_REK-2025-0042")
    result = world.sync_and_link(NOW + DAY)

    assert result.linked == 0
    [item] = result.review
    assert item.kind is ReviewKind.KEYWORD_REMOVED
    assert item.case_ref == "REK-2025-0042"
    assert world.cases_of(ids[2]) == {"REK-2025-0042"}
    assert world.verdict(ids[2], NOW + 400 * DAY).action is Action.KEEP
    review = service.review(world.store, world.policy)
    assert [i.kind for i in review.items] == [ReviewKind.KEYWORD_REMOVED]
    assert world.mirror(NOW + DAY).marked == 1  # the DB is the truth: the mark comes back
    assert "$Reklamation_REK-2025-0042" in world.server_keywords("INBOX")[ids[2]]
    assert service.review(world.store, world.policy).items == []


def test_late_reply_after_tagging_is_protected_in_any_folder(world: World) -> None:
    world.deliver(
        "INBOX", subject="Leveransen saknas", message_id="l1@kund.example.se", when=NOW - 4 * DAY
    )
    world.deliver(
        "Sent",
        subject="SV: Leveransen saknas",
        message_id="l2@promix.example",
        when=NOW - 3 * DAY,
        sender=STAFF,
        refs=["l1@kund.example.se"],
    )
    world.sync_and_link()
    service.open_case(
        world.store,
        world.policy,
        ref="REK-2025-0060",
        title="Saknad leverans",
        actor="bob",
        now=NOW,
    )
    tagged = service.tag(
        world.store,
        world.policy,
        target="<L1@kund.example.se>",
        ref="REK-2025-0060",
        actor="bob",
        now=NOW,
    )
    assert tagged.selection.kind == "message-id"
    assert len(tagged.linked) == 1
    assert tagged.selection.thread_messages == 2

    world.deliver(
        "Archive",
        subject="SV: SV: Leveransen saknas",
        message_id="l3@kund.example.se",
        when=NOW + 7 * DAY,
        refs=["l1@kund.example.se", "l2@promix.example"],
    )
    result = world.sync_and_link(NOW + 7 * DAY)
    assert result.linked == 0  # links are per thread: nothing new to link
    assert world.cases_of("l3@kund.example.se") == {"REK-2025-0060"}
    assert world.verdict("l3@kund.example.se", NOW + 400 * DAY).action is Action.KEEP
    assert world.mirror(NOW + 7 * DAY).marked == 3
    assert "$Reklamation_REK-2025-0060" in world.server_keywords("Archive")["l3@kund.example.se"]


def test_two_cases_merged_by_a_reply_referencing_both_keep_both_links(world: World) -> None:
    a = complaint_over_inbox_and_sent(world, "REK-2025-0070", prefix="a")
    world.deliver(
        "INBOX",
        subject="Reklamation REK-2025-0071: repig disk",
        message_id="b0@kund.example.se",
        when=NOW - 10 * DAY,
    )
    world.sync_and_link()
    thread_a, thread_b = world.thread_of(a[0]), world.thread_of("b0@kund.example.se")
    assert thread_a != thread_b

    world.deliver(
        "INBOX",
        subject="SV: båda ärendena",
        message_id="m1@kund.example.se",
        when=NOW - DAY,
        refs=[a[3], "b0@kund.example.se"],
    )
    result = world.sync_and_link(NOW + DAY)

    assert result.merged_threads == 1
    assert result.linked == 0
    merged = world.thread_of("m1@kund.example.se")
    assert merged == min(thread_a, thread_b)  # the thread with the oldest message survives
    assert {world.thread_of(m) for m in [*a, "b0@kund.example.se"]} == {merged}
    for message_id in [*a, "b0@kund.example.se", "m1@kund.example.se"]:
        assert world.cases_of(message_id) == {"REK-2025-0070", "REK-2025-0071"}
    with world.store.transaction() as session:
        links = session.scalars(select(CaseThread).where(CaseThread.unlinked_at.is_(None))).all()
        assert {link.thread_id for link in links} == {merged}
        assert any("merged into" in link.note for link in links)
        merge_events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.tag == AuditTag.CASE_LINK.value, AuditEvent.data.contains('"merge"')
            )
        ).all()
        assert len(merge_events) == 1
    for ref in ("REK-2025-0070", "REK-2025-0071"):
        assert service.show_case(world.store, world.policy, ref=ref).case.messages == 6
    # Closing one case leaves the thread kept by the other.
    service.close_case(
        world.store, world.policy, ref="REK-2025-0070", reason="klar", actor="bob", now=NOW + DAY
    )
    assert world.verdict("m1@kund.example.se", NOW + 400 * DAY).action is Action.KEEP


def test_untag_removes_our_keyword_and_the_keyword_does_not_relink(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    world.mirror()
    with pytest.raises(InputError, match="reason"):
        service.untag(
            world.store,
            world.policy,
            target=ids[0],
            ref="REK-2025-0042",
            reason=" ",
            actor="bob",
            now=NOW,
            server_for=world.server_for,
        )
    result = service.untag(
        world.store,
        world.policy,
        target=ids[1],
        ref="REK-2025-0042",
        reason="fel ärende",
        actor="bob",
        now=NOW + DAY,
        server_for=world.server_for,
    )
    assert len(result.unlinked) == 1
    assert result.keywords_removed_from == 4
    assert all(
        not any(flag.startswith("$Reklamation") for flag in flags)
        for flags in world.server_keywords("INBOX").values()
    )
    assert world.cases_of(ids[0]) == set()
    # New mail naming the case in that thread is reported, not linked against the decision.
    world.deliver(
        "INBOX",
        subject="SV: Reklamation REK-2025-0042: trasig lampa",
        message_id="c9@kund.example.se",
        when=NOW + DAY,
        refs=ids,
    )
    relinked = world.sync_and_link(NOW + 2 * DAY)
    assert relinked.linked == 0
    assert [i.kind for i in relinked.review] == [ReviewKind.PATTERN_ON_UNLINKED]
    # ... and stays listed for review until someone decides.
    review = service.review(world.store, world.policy)
    assert [(i.kind, i.case_ref) for i in review.items] == [
        (ReviewKind.PATTERN_ON_UNLINKED, "REK-2025-0042")
    ]
    detail = service.show_case(world.store, world.policy, ref="REK-2025-0042")
    assert detail.threads == []
    assert detail.history[0].unlink_reason == "fel ärende"
    with pytest.raises(NotFoundError, match="not linked"):
        service.untag(
            world.store,
            world.policy,
            target=ids[1],
            ref="REK-2025-0042",
            reason="igen",
            actor="bob",
            now=NOW,
            server_for=world.server_for,
        )


def test_case_lifecycle_and_errors(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world, ref="REK-2025-0080")
    world.policy = Policy(
        default_keep=Duration.parse("180d"), case_auto_create=False, source_hash="t"
    )
    assert world.sync_and_link().linked == 0
    # Opening the case links the mail that named it before it existed.
    view = service.open_case(
        world.store, world.policy, ref="rek-2025-0080", title="Lampa", actor="bob", now=NOW
    )
    assert view.ref == "REK-2025-0080"
    assert view.threads == 1
    assert view.messages == 4
    with pytest.raises(InputError, match="already exists"):
        service.open_case(
            world.store, world.policy, ref="REK-2025-0080", title="", actor="bob", now=NOW
        )
    with pytest.raises(InputError, match="not a case reference"):
        service.open_case(world.store, world.policy, ref="lampa-1", title="", actor="bob", now=NOW)
    with pytest.raises(NotFoundError, match="no case REK-2025-0999"):
        service.close_case(
            world.store, world.policy, ref="REK-2025-0999", reason="", actor="bob", now=NOW
        )
    closed = service.close_case(
        world.store, world.policy, ref="REK-2025-0080", reason="ersatt", actor="bob", now=NOW
    )
    # 90 days on Stockholm's wall clock: 13:00 CET → 13:00 CEST
    assert closed.protected_until == datetime(2026, 5, 31, 11, tzinfo=UTC)
    verdict = world.verdict(ids[0], NOW + 30 * DAY)
    assert verdict.action is Action.KEEP
    assert verdict.reasons[0].kind is ReasonKind.CASE_CLOSED
    with pytest.raises(InputError, match="closed"):
        service.tag(
            world.store, world.policy, target=ids[0], ref="REK-2025-0080", actor="bob", now=NOW
        )
    service.reopen_case(world.store, world.policy, ref="REK-2025-0080", actor="bob", now=NOW)
    with pytest.raises(NotFoundError, match="matches no indexed message"):
        service.tag(
            world.store,
            world.policy,
            target="subject:nothing-like-this",
            ref="REK-2025-0080",
            actor="bob",
            now=NOW,
        )
    with world.store.transaction() as session:
        tags = session.scalars(select(AuditEvent.tag).order_by(AuditEvent.seq)).all()
        case = session.scalar(select(Case).where(Case.ref == "REK-2025-0080"))
        assert case is not None
        assert case.status == "open"
        assert case.closed_at is None
    assert tags == ["case:open", "case:link", "case:close", "case:reopen"]


def test_large_query_selection_needs_confirmation(world: World) -> None:
    acct = world.account
    append_messages(
        acct.host,
        acct.port,
        acct.username,
        acct.password,
        "INBOX",
        [
            (
                message_bytes(
                    subject=f"Beställning {i}",
                    from_=CUSTOMER,
                    date=NOW - DAY,
                    message_id=f"<bulk{i}@x.example>",
                ),
                (),
                NOW - DAY,
            )
            for i in range(55)
        ],
    )
    world.sync()  # not linked yet: tag threads them first
    service.open_case(
        world.store, world.policy, ref="REK-2025-0090", title="", actor="bob", now=NOW
    )
    with pytest.raises(InputError, match="--yes"):
        service.tag(
            world.store,
            world.policy,
            target="from:anna@kund.example.se",
            ref="REK-2025-0090",
            actor="bob",
            now=NOW,
        )
    result = service.tag(
        world.store,
        world.policy,
        target="from:anna@kund.example.se",
        ref="REK-2025-0090",
        actor="bob",
        now=NOW,
        confirmed=True,
    )
    assert result.selection.kind == "query"
    assert len(result.linked) == 55


def test_mirrored_keyword_does_not_outlive_the_closed_cases_period(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    world.mirror()
    service.close_case(
        world.store, world.policy, ref="REK-2025-0042", reason="klar", actor="bob", now=NOW
    )
    world.sync()
    verdict = world.verdict(ids[0], NOW + 400 * DAY)
    assert verdict.action is Action.PURGE, verdict.explain()


def test_a_plain_keyword_marked_on_a_closed_cases_thread_still_keeps(world: World) -> None:
    """A late reply staff marked in their client stays, whatever the case's period says."""
    ids = complaint_over_inbox_and_sent(world)
    world.sync_and_link()
    world.mirror()
    service.close_case(
        world.store, world.policy, ref="REK-2025-0042", reason="klar", actor="bob", now=NOW
    )
    world.imap_store("INBOX", ids[0], "+FLAGS", "$Reklamation")
    world.sync()
    verdict = world.verdict(ids[0], NOW + 400 * DAY)
    assert verdict.action is Action.KEEP, verdict.explain()


def test_the_scheduled_run_mirrors_the_case_keywords(world: World) -> None:
    ids = complaint_over_inbox_and_sent(world)
    request = SyncRequest(
        account="support", host=world.settings.host, username=world.settings.username
    )
    with world.server() as server:
        outcome = scheduled_run(
            world.store,
            server,
            world.policy,
            request,
            actor="scheduler",
            now=NOW,
            link_cases=link_after_sync,
        )
    assert outcome.linked == 1
    assert outcome.keywords_set == 4
    assert "$Reklamation_REK-2025-0042" in world.server_keywords("INBOX")[ids[0]]
    [entry] = audit.query(world.store, tag="run:scheduled")
    assert entry.data["keywords_set"] == 4
