"""The web page against a real Dovecot (Flask test client): a message's text fetched from
the server without marking it read, linking sets the case keyword on the server, and a
plan approved, executed and restored from the quarantine through the pages."""

from __future__ import annotations

import time

import pytest

from mailhygiene.purge.plan import stored_summary
from tests.web.conftest import PASSWORD, login, message_row, post
from tests.web.live import CASE, Live, live_fixture  # noqa: F401

pytestmark = pytest.mark.dovecot


def test_a_message_is_fetched_as_text_and_stays_unread(live: Live) -> None:
    row = message_row(live.store, "c0@kund.example.se")
    page = live.app.test_client()
    login(page, "bob", PASSWORD)
    text = page.get(f"/message/{row}").get_data(as_text=True)
    assert "Hej, lampan är trasig." in text
    assert "Order [https://kund.example.se/order]" in text
    assert "alert(" not in text
    assert "<script" not in text
    assert "\\Seen" not in live.server_flags("INBOX")["c0@kund.example.se"]


def test_linking_puts_the_case_keyword_on_the_server(live: Live) -> None:
    row = message_row(live.store, "c2@kund.example.se")
    client = live.app.test_client()
    login(client, "bob", PASSWORD)
    post(client, f"/message/{row}", "/link", {"row": str(row), "ref": CASE, "back": "/"})
    keyword = f"$Reklamation_{CASE}"
    inbox, sent = live.server_flags("INBOX"), live.server_flags("Sent")
    assert keyword in inbox["c0@kund.example.se"]
    assert keyword in inbox["c2@kund.example.se"]
    assert keyword in sent["c1@promix.example"]
    assert keyword not in inbox["n1@nyheter.example"]


def test_a_plan_is_approved_executed_and_restored_through_the_pages(live: Live) -> None:
    ref = live.plan(actor="mats")
    maria = live.app.test_client()
    login(maria, "maria", PASSWORD)
    post(maria, f"/plans/{ref}", f"/plans/{ref}/approve", {"comment": "checked"})
    assert stored_summary(live.store, ref).status == "approved"
    post(maria, f"/plans/{ref}", f"/plans/{ref}/execute", {})
    deadline = time.monotonic() + 60
    while stored_summary(live.store, ref).status != "done":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.2)
    page = maria.get(f"/plans/{ref}").get_data(as_text=True)
    assert "5 done, 0 skipped, 0 remaining" in page
    assert live.server_flags("INBOX") == {}
    assert live.server_flags("Sent") == {}
    assert set(live.server_flags("Quarantine")) == {
        "c0@kund.example.se",
        "c1@promix.example",
        "c2@kund.example.se",
        "n1@nyheter.example",
        "n2@nyheter.example",
    }
    quarantine = maria.get(f"/quarantine?plan={ref}").get_data(as_text=True)
    assert "5 message(s)" in quarantine
    post(
        maria, f"/quarantine?plan={ref}", "/quarantine/restore", {"account": "support", "plan": ref}
    )
    assert "Restored 5 message(s)" in maria.get("/quarantine").get_data(as_text=True)
    assert len(live.server_flags("INBOX")) == 4
    assert set(live.server_flags("Sent")) == {"c1@promix.example"}
