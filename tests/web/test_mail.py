"""Support staff's pages with the Flask test client: search, conversations, a message's
text, linking to a case — over an index written as a sync writes it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from mailhygiene.cases.service import open_case, show_case
from mailhygiene.restrictions import restrict
from mailhygiene.store.models import Message
from tests.web.conftest import NOW, Site, indexed, message_row, post, put_messages


def thread_of(site: Site, message_id: str) -> str:
    with site.store.transaction() as session:
        thread = session.scalar(select(Message.thread_id).where(Message.message_id == message_id))
    assert thread is not None
    return thread


def test_search_uses_the_cli_query_language(conversation: Site) -> None:
    client = conversation.login("bob")
    page = client.get('/search?q=subject:"trasig lampa" -folder:Sent')
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "2 message(s) match" in text
    assert "Fråga om leverans" not in text


def test_a_bad_query_is_one_line_not_a_traceback(conversation: Site) -> None:
    client = conversation.login("bob")
    page = client.get("/search?q=before:2025-13-45")
    assert page.status_code == 400
    text = page.get_data(as_text=True)
    assert "before:" in text
    assert "Traceback" not in text


def test_search_pages_through_many_results(site: Site) -> None:
    put_messages(
        site.store,
        "INBOX",
        [
            indexed(
                uid,
                subject=f"Faktura {uid:03d}",
                message_id=f"f{uid}@example.se",
                when=NOW - timedelta(hours=uid),
            )
            for uid in range(1, 121)
        ],
    )
    client = site.login("bob")
    first = client.get("/search?q=faktura").get_data(as_text=True)
    assert first.count("Faktura ") == 50
    assert "Faktura 001" in first
    assert "1–50 of 120" in first
    assert "offset=50" in first
    last = client.get("/search?q=faktura&offset=100").get_data(as_text=True)
    assert last.count("Faktura ") == 20
    assert "Faktura 120" in last
    assert "101–120 of 120" in last
    assert "older →" not in last
    assert "← newer" in last


def test_a_conversation_spans_folders_with_each_verdict(conversation: Site) -> None:
    thread = thread_of(conversation, "c0@kund.example.se")
    client = conversation.login("bob")
    page = client.get(f"/thread/{thread}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "support/INBOX" in text
    assert "support/Sent" in text
    assert "3 in every folder and account" in text
    # 200 days old with the default 180 days: purgeable since day 180 after receipt.
    day = (NOW - timedelta(days=20)).date().isoformat()
    assert f"purgeable since {day}: default 180 days" in text
    assert "not linked to a case" in text


def test_the_verdict_follows_a_case_link(conversation: Site) -> None:
    open_case(
        conversation.store, conversation.policy, ref="REK-2025-0042", title="", actor="bob", now=NOW
    )
    thread = thread_of(conversation, "c0@kund.example.se")
    client = conversation.login("bob")
    post(
        client,
        f"/thread/{thread}",
        "/link",
        {"row": str(message_row(conversation.store, "c2@kund.example.se")), "ref": "REK-2025-0042"},
    )
    text = client.get(f"/thread/{thread}").get_data(as_text=True)
    assert text.count("kept: case REK-2025-0042 open") == 3
    assert "REK-2025-0042 · open" in text


def test_linking_a_conversation_sets_the_keyword_on_the_server(conversation: Site) -> None:
    open_case(
        conversation.store, conversation.policy, ref="REK-2025-0042", title="", actor="bob", now=NOW
    )
    row = message_row(conversation.store, "c0@kund.example.se")
    client = conversation.login("bob")
    response = post(
        client,
        f"/message/{row}",
        "/link",
        {"row": str(row), "ref": "rek-2025-0042", "back": f"/message/{row}"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/message/{row}"
    flashed = client.get(f"/message/{row}").get_data(as_text=True)
    assert "Linked the conversation (3 message(s)) to REK-2025-0042" in flashed
    assert "$Reklamation_REK-2025-0042 set on 3 message(s)" in flashed
    marked = {
        key
        for key, flags in conversation.server.flags.items()
        if "$Reklamation_REK-2025-0042" in flags
    }
    assert marked == {("INBOX", 1), ("INBOX", 2), ("Sent", 1)}
    detail = show_case(conversation.store, conversation.policy, ref="REK-2025-0042")
    assert [t.linked_by for t in detail.threads] == ["bob"]
    assert all(m.has_keyword for m in detail.messages)


def test_opening_a_new_case_links_the_conversation(conversation: Site) -> None:
    row = message_row(conversation.store, "q0@kund.example.se")
    client = conversation.login("bob")
    post(
        client,
        f"/message/{row}",
        "/cases/open",
        {"row": str(row), "ref": "REK-2026-0007", "title": "Leverans", "back": f"/message/{row}"},
    )
    detail = show_case(conversation.store, conversation.policy, ref="REK-2026-0007")
    assert detail.case.title == "Leverans"
    assert detail.case.opened_by == "bob"
    assert [m.message_id for m in detail.messages] == ["q0@kund.example.se"]


def test_linking_to_an_unknown_case_says_what_to_do(conversation: Site) -> None:
    row = message_row(conversation.store, "q0@kund.example.se")
    client = conversation.login("bob")
    response = post(
        client, "/search", "/link", {"row": str(row), "ref": "REK-2025-9999", "back": "/search"}
    )
    assert response.status_code == 302
    text = client.get("/search").get_data(as_text=True)
    assert "no case REK-2025-9999" in text
    assert conversation.server.flags == {}


def test_a_message_is_shown_as_text_never_as_html(conversation: Site) -> None:
    row = message_row(conversation.store, "c0@kund.example.se")
    raw = (
        b"From: Anna <anna@kund.example.se>\r\nTo: support@promix.example\r\n"
        b"Subject: =?utf-8?q?Trasig_lampa_=C3=A5?=\r\nMessage-ID: <c0@kund.example.se>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        b"<body><p>Hej!</p><p>Lampan &auml;r <b>trasig</b>.</p>"
        b"<a href='https://phish.example/login'>Logga in</a>"
        b"<img src='https://tracker.example/p.gif' onerror='alert(1)'></body></html>\r\n"
    )
    put_messages(
        conversation.store,
        "INBOX",
        [
            indexed(
                1, subject="Trasig lampa", message_id="c0@kund.example.se", when=NOW, size=len(raw)
            )
        ],
    )
    conversation.server.messages[("INBOX", 1)] = raw
    page = conversation.login("bob").get(f"/message/{row}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Lampan är trasig." in text
    assert "Logga in [https://phish.example/login]" in text
    assert "Trasig lampa å" in text
    for forbidden in ("<script", "alert(", "<img", "tracker.example", "color:red", "<b>"):
        assert forbidden not in text, forbidden
    assert "text/html, shown as text" in text


def test_a_message_that_changed_on_the_server_is_not_shown(conversation: Site) -> None:
    row = message_row(conversation.store, "c0@kund.example.se")
    conversation.server.messages[("INBOX", 1)] = b"Subject: someone else's mail\r\n\r\nprivate\r\n"
    page = conversation.login("bob").get(f"/message/{row}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "private" not in text
    assert "no longer where the index says" in text


def test_restricted_mail_is_hidden_from_staff_but_not_from_admins(conversation: Site) -> None:
    restrict(
        conversation.store,
        "anna@kund.example.se",
        basis="art. 18(1)(a)",
        request_ref="",
        actor="alice",
        now=NOW,
    )
    row = message_row(conversation.store, "q0@kund.example.se")
    support = conversation.login("bob")
    page = support.get("/search?q=leverans").get_data(as_text=True)
    assert "0 message(s) match" in page
    assert support.get(f"/message/{row}").status_code == 404
    refused = post(support, "/search", "/link", {"row": str(row), "ref": "REK-2025-0042"})
    assert refused.status_code == 302
    admin = conversation.login("alice")
    assert "1 message(s) match" in admin.get("/search?q=leverans").get_data(as_text=True)
    conversation.server.messages[("INBOX", 3)] = b""
    assert admin.get(f"/message/{row}").status_code == 200
