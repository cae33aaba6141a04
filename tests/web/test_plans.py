"""Managers' pages with the Flask test client: the disposition review, approve / reject with
four eyes, refusals, paging through a plan and through the plan list, the quarantine."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from mailhygiene.policy import Policy
from mailhygiene.purge.plan import plan_purge, stored_summary
from mailhygiene.store import purge_queries
from tests.web.conftest import NOW, Site, indexed, post, put_messages


def make_plan(site: Site, actor: str = "mats", policy: Policy | None = None) -> str:
    summary = plan_purge(
        site.store, policy or site.policy, account="support", now=site.clock(), actor=actor
    )
    assert summary.ref is not None
    return summary.ref


def with_policy(site: Site, policy: Policy) -> Site:
    site.policy = policy
    site.context.policy = lambda: policy
    return site


def test_the_review_shows_totals_samples_exclusions_and_the_previous_plan(
    conversation: Site,
) -> None:
    first = make_plan(conversation)
    second = make_plan(conversation)
    page = conversation.login("maria").get(f"/plans/{second}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "By folder" in text
    assert '<td>INBOX</td><td class="num">2</td>' in text
    assert '<td>Sent</td><td class="num">1</td>' in text
    assert "default:default — 3 message(s)" in text
    assert "kept 180 days from received" in text
    assert 'default retention not yet over</td><td class="num">1</td>' in text
    assert f'Previous: <a href="/plans/{first}">{first}</a>' in text
    assert "3 message(s) are in both; 0 are new here;" in text
    assert "Nobody has approved or rejected it yet." in text
    assert "within the auto-approval limit" in text


def test_a_manager_approves_and_the_approval_is_shown(conversation: Site) -> None:
    ref = make_plan(conversation, actor="mats")
    client = conversation.login("maria")
    response = post(client, f"/plans/{ref}", f"/plans/{ref}/approve", {"comment": "sample checked"})
    assert response.status_code == 302
    assert stored_summary(conversation.store, ref).status == "approved"
    text = client.get(f"/plans/{ref}").get_data(as_text=True)
    assert f"Plan {ref} approved by maria." in text
    assert "approve by <strong>maria</strong>" in text
    assert "“sample checked”" in text
    assert ">Execute</button>" in text


def test_four_eyes_the_maker_of_a_bulk_plan_cannot_approve_it(conversation: Site) -> None:
    with_policy(conversation, replace(Policy(), auto_approve_limit=1))
    ref = make_plan(conversation, actor="maria")
    client = conversation.login("maria")
    text = client.get(f"/plans/{ref}").get_data(as_text=True)
    assert "a manager other than maria must approve it" in text
    post(client, f"/plans/{ref}", f"/plans/{ref}/approve", {"comment": "mine"})
    refused = client.get(f"/plans/{ref}").get_data(as_text=True)
    assert "another manager must approve it" in refused
    assert stored_summary(conversation.store, ref).status == "pending"
    other = conversation.login("mats")
    post(other, f"/plans/{ref}", f"/plans/{ref}/approve", {"comment": "second pair of eyes"})
    assert stored_summary(conversation.store, ref).status == "approved"
    assert "approved by a second manager" in other.get(f"/plans/{ref}").get_data(as_text=True)


def test_rejecting_needs_a_reason_and_ends_the_plan(conversation: Site) -> None:
    ref = make_plan(conversation)
    client = conversation.login("maria")
    post(client, f"/plans/{ref}", f"/plans/{ref}/reject", {"comment": "  "})
    assert "say why the plan is rejected" in client.get(f"/plans/{ref}").get_data(as_text=True)
    assert stored_summary(conversation.store, ref).status == "pending"
    post(client, f"/plans/{ref}", f"/plans/{ref}/reject", {"comment": "wrong rule"})
    assert stored_summary(conversation.store, ref).status == "rejected"
    text = client.get(f"/plans/{ref}").get_data(as_text=True)
    assert "reject by <strong>maria</strong>" in text
    assert ">Approve</button>" not in text


def test_an_unapproved_plan_is_not_executed(conversation: Site) -> None:
    ref = make_plan(conversation)
    client = conversation.login("maria")
    post(client, f"/plans/{ref}", f"/plans/{ref}/execute", {})
    text = client.get(f"/plans/{ref}").get_data(as_text=True)
    assert "only an approved plan can be executed" in text
    assert conversation.context.executions == {}


def test_an_expired_plan_cannot_be_approved(conversation: Site) -> None:
    ref = make_plan(conversation)
    conversation.clock.advance(days=8)
    client = conversation.login("maria")
    post(client, f"/plans/{ref}", f"/plans/{ref}/approve", {"comment": ""})
    assert "expired" in client.get(f"/plans/{ref}").get_data(as_text=True)


def test_every_message_of_a_rule_pages_by_key(site: Site) -> None:
    old = NOW - timedelta(days=400)
    put_messages(
        site.store,
        "INBOX",
        [
            indexed(uid, subject=f"Gammal {uid}", message_id=f"g{uid}@x.se", when=old)
            for uid in range(1, 131)
        ],
    )
    ref = make_plan(site)
    client = site.login("maria")
    review = client.get(f"/plans/{ref}").get_data(as_text=True)
    assert "all 130 messages of this rule" in review
    first = client.get(f"/plans/{ref}/items?reason=default:default").get_data(as_text=True)
    assert first.count("<td>INBOX</td>") == 100
    assert "more →" in first
    after = first.split("after=")[1].split('"')[0]
    second = client.get(f"/plans/{ref}/items?reason=default:default&after={after}")
    assert second.get_data(as_text=True).count("<td>INBOX</td>") == 30
    assert "more →" not in second.get_data(as_text=True)


def test_the_plan_list_pages_by_key(conversation: Site) -> None:
    refs = [make_plan(conversation) for _ in range(27)]
    client = conversation.login("maria")
    first = client.get("/plans").get_data(as_text=True)
    assert refs[-1] in first
    assert refs[1] not in first
    assert "older plans →" in first
    before = first.split("before=")[1].split('"')[0]
    second = client.get(f"/plans?before={before}").get_data(as_text=True)
    assert refs[0] in second
    assert refs[1] in second
    assert "older plans →" not in second


@pytest.fixture
def quarantined(site: Site) -> Site:
    with site.store.transaction() as session:
        purge_queries.add_quarantine_entries(
            session,
            [
                {
                    "account": "support",
                    "plan_item_id": None,
                    "plan_ref": "P-20260301-abcdef",
                    "original_folder": "INBOX",
                    "quarantine_folder": "Quarantine",
                    "quarantine_uidvalidity": 1,
                    "quarantine_uid": n,
                    "message_id": f"q{n}@x.se",
                    "size": 1000,
                    "moved_at": NOW,
                    "purge_after": NOW + timedelta(days=30),
                    "state": "held",
                }
                for n in range(1, 151)
            ],
        )
    return site


def test_the_quarantine_pages_by_key(quarantined: Site) -> None:
    client = quarantined.login("bob")
    first = client.get("/quarantine").get_data(as_text=True)
    assert "150 message(s), 146.5 KB, wait in quarantine" in first
    assert "q1@x.se" in first
    assert "q101@x.se" not in first
    assert 'type="checkbox"' not in first
    after = first.split("after=")[1].split('"')[0]
    second = client.get(f"/quarantine?after={after}").get_data(as_text=True)
    assert "q150@x.se" in second
    assert "more →" not in second


def test_a_manager_sees_restore_and_must_choose_something(quarantined: Site) -> None:
    client = quarantined.login("maria")
    page = client.get("/quarantine?plan=P-20260301-abcdef").get_data(as_text=True)
    assert 'type="checkbox"' in page
    assert "Restore everything plan P-20260301-abcdef moved" in page
    post(client, "/quarantine", "/quarantine/restore", {"account": "support"})
    assert "choose the messages to restore" in client.get("/quarantine").get_data(as_text=True)


def test_an_unknown_account_is_a_404(quarantined: Site) -> None:
    assert quarantined.login("bob").get("/quarantine?account=other").status_code == 404
