"""The paged plan and quarantine views and the conversation services, on SQLite and
PostgreSQL: keys page without gaps or repeats, diffs count what they say."""

from __future__ import annotations

from datetime import timedelta

from mailhygiene.cases.service import link_new_mail
from mailhygiene.conversations import message_verdicts, search_page, thread_page
from mailhygiene.policy import Policy
from mailhygiene.purge.browse import plan_list, plan_review, quarantine_page, reason_page
from mailhygiene.purge.plan import plan_purge
from mailhygiene.store import purge_queries
from mailhygiene.store.session import Store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401
from tests.web.conftest import ACCOUNT, NOW, indexed, put_messages

OLD = NOW - timedelta(days=400)


def _plan(store: Store, policy: Policy, actor: str = "maria") -> str:
    summary = plan_purge(store, policy, account=ACCOUNT, now=NOW, actor=actor)
    assert summary.ref is not None
    return summary.ref


def test_plans_and_their_items_page_by_key(store: Store) -> None:
    policy = Policy()
    put_messages(
        store,
        "INBOX",
        [indexed(u, subject=f"s{u}", message_id=f"m{u}@x", when=OLD) for u in range(1, 26)],
    )
    refs = [_plan(store, policy) for _ in range(5)]
    seen: list[str] = []
    before = None
    while True:
        page = plan_list(store, before_id=before, limit=2)
        seen += [p.ref for p in page.plans if p.ref]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == list(reversed(refs))
    uids: list[int] = []
    after = None
    while True:
        items = reason_page(store, refs[0], "default:default", after_id=after, limit=10)
        uids += [i.uid for i in items.items]
        if items.next_after is None:
            break
        after = items.next_after
    assert sorted(uids) == list(range(1, 26))
    assert len(uids) == 25


def test_the_review_diffs_against_the_previous_plan(store: Store) -> None:
    policy = Policy()
    put_messages(
        store,
        "INBOX",
        [indexed(u, subject=f"s{u}", message_id=f"m{u}@x", when=OLD) for u in range(1, 6)],
    )
    first = _plan(store, policy)
    put_messages(
        store,
        "Archive",
        [indexed(u, subject=f"a{u}", message_id=f"a{u}@x", when=OLD) for u in range(1, 4)],
    )
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, first)
    second = _plan(store, policy, actor="mats")
    review = plan_review(store, policy, second, per_reason=2)
    assert review.diff is not None
    assert review.diff.previous.ref == first
    assert (review.diff.common, review.diff.added, review.diff.dropped) == (5, 3, 0)
    assert [(c.key, c.now, c.before) for c in review.diff.by_folder] == [
        ("Archive", 3, 0),
        ("INBOX", 5, 5),
    ]
    assert [(s.reason, s.messages, len(s.items)) for s in review.samples] == [
        ("default:default", 8, 2)
    ]
    assert review.states == {"planned": 8}
    assert plan.item_count == 5
    assert plan_review(store, policy, first, per_reason=1).diff is None


def test_quarantine_pages_by_key(store: Store) -> None:
    with store.transaction() as session:
        purge_queries.add_quarantine_entries(
            session,
            [
                {
                    "account": ACCOUNT,
                    "plan_item_id": None,
                    "plan_ref": "P-1" if n % 2 else "P-2",
                    "original_folder": "INBOX",
                    "quarantine_folder": "Quarantine",
                    "quarantine_uidvalidity": 1,
                    "quarantine_uid": n,
                    "message_id": f"q{n}@x",
                    "size": 10,
                    "moved_at": NOW,
                    "purge_after": NOW,
                    "state": "held" if n != 7 else "restored",
                }
                for n in range(1, 12)
            ],
        )
    ids: list[str] = []
    after = None
    while True:
        page = quarantine_page(store, account=ACCOUNT, after_id=after, limit=4)
        assert (page.total, page.bytes) == (10, 100)
        ids += [e.message_id for e in page.entries]
        if page.next_after is None:
            break
        after = page.next_after
    assert ids == [f"q{n}@x" for n in range(1, 12) if n != 7]
    only = quarantine_page(store, account=ACCOUNT, after_id=None, limit=50, plan_ref="P-2")
    assert [e.message_id for e in only.entries] == ["q2@x", "q4@x", "q6@x", "q8@x", "q10@x"]


def test_conversations_and_verdicts(store: Store) -> None:
    policy = Policy()
    put_messages(
        store,
        "INBOX",
        [
            indexed(1, subject="Fråga", message_id="t0@x", when=OLD),
            indexed(2, subject="SV: Fråga", message_id="t1@x", when=NOW, references=("t0@x",)),
        ],
    )
    link_new_mail(store, policy, ACCOUNT, now=NOW, actor="test")
    found = search_page(store, policy, "fråga", limit=10, offset=0)
    assert found.total == 2
    thread = found.messages[0].thread_id
    assert thread is not None
    assert found.messages[1].thread_id == thread
    page = thread_page(store, policy, thread, now=NOW, limit=1, offset=1)
    assert page.total == 2
    assert [m.subject for m in page.messages] == ["Fråga"]
    verdicts = message_verdicts(store, policy, [(m.id, m.account) for m in found.messages], now=NOW)
    texts = sorted(v.text for v in verdicts.values())
    later = (NOW + timedelta(days=180)).date().isoformat()
    assert texts[0] == f"purgeable from {later}: default 180 days"
    assert texts[1].startswith("purgeable since ")
