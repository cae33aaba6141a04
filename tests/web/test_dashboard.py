"""The dashboard: its page, and the figures behind it on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.holds import place_hold
from mailhygiene.overview import dashboard, month_starts, size_series
from mailhygiene.policy import Policy
from mailhygiene.store.browse_queries import Bucket
from mailhygiene.store.models import SubjectRequest, Tombstone
from mailhygiene.store.session import Store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401
from tests.web.conftest import NOW, Site, indexed, put_messages


def test_an_empty_index_says_what_to_do(site: Site) -> None:
    page = site.login("bob").get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "The index is empty" in text
    assert "No scheduled run has been recorded yet." in text
    assert "No open requests." in text


def test_the_dashboard_shows_every_figure(conversation: Site) -> None:
    store = conversation.store
    audit.record(
        store,
        actor="scheduler",
        tag=AuditTag.RUN_SCHEDULED,
        subject="support",
        data={"status": "awaiting_approval", "new_mail": 12, "plan": "P-1", "planned": 900},
        at=NOW - timedelta(hours=50),
    )
    place_hold(
        store,
        name="tvist-2026",
        query="from:anna@kund.example.se",
        reason="tvist",
        actor="alice",
        now=NOW,
    )
    with store.transaction() as session:
        session.add(
            SubjectRequest(
                ref="SR-1",
                email="person@example.se",
                kind="find",
                requested_at=NOW,
                requested_by="maria",
                due_at=NOW + timedelta(days=3),
                status="open",
            )
        )
    text = conversation.login("bob").get("/").get_data(as_text=True)
    assert "awaiting approval" in text
    assert "no scheduled run for 50 hours" in text
    assert "tvist-2026" in text
    assert "SR-1" in text
    assert "person@example.se" not in text
    assert "<svg" in text
    assert '<div class="figure">4</div>' in text


def test_size_series_adds_back_mail_deleted_after_each_point() -> None:
    policy = Policy(timezone="UTC")
    boundaries = month_starts(datetime(2026, 3, 15, tzinfo=UTC), policy, 3)
    assert [b.date().isoformat() for b in boundaries] == [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-03-15",
    ]
    present = {0: Bucket(10, 1000), 2: Bucket(1, 50), 3: Bucket(2, 20)}
    # 4 messages received in interval 0 (before Jan 1) deleted in interval 2 (February).
    deleted = {(0, 2): Bucket(4, 400)}
    points = size_series(boundaries, present, deleted, policy)
    assert [(p.label, p.messages, p.bytes) for p in points] == [
        ("2026-01", 14, 1400),
        ("2026-02", 14, 1400),
        ("2026-03", 11, 1050),
        ("now", 13, 1070),
    ]


def test_month_starts_follow_the_policy_zone() -> None:
    policy = Policy(timezone="Europe/Stockholm")
    boundaries = month_starts(datetime(2026, 1, 10, tzinfo=UTC), policy, 2)
    assert boundaries[0] == datetime(2025, 11, 30, 23, tzinfo=UTC)
    assert boundaries[1] == datetime(2025, 12, 31, 23, tzinfo=UTC)


def test_dashboard_figures_on_both_back_ends(store: Store) -> None:
    policy = Policy(timezone="UTC")
    put_messages(
        store,
        "INBOX",
        [
            indexed(1, subject="a", message_id="a@x", when=NOW - timedelta(days=100), size=100),
            indexed(2, subject="b", message_id="b@x", when=NOW - timedelta(days=10), size=10),
        ],
    )
    with store.transaction() as session:
        session.add(
            Tombstone(
                account="support",
                message_id_hash="0" * 64,
                folder="INBOX",
                internal_date=NOW - timedelta(days=300),
                date_header=None,
                size=1000,
                rule="default:default",
                policy_hash="",
                plan_ref="P-1",
                approvers="maria",
                disposed_at=NOW - timedelta(days=20),
                action="moved",
            )
        )
    figures = dashboard(store, policy, now=NOW)
    by_label = {p.label: p for p in figures.size}
    assert by_label["now"].messages == 2
    assert by_label["now"].bytes == 110
    assert by_label["2026-01"].messages == 2  # the old one, and the one deleted in February
    assert by_label["2026-01"].bytes == 1100
    assert by_label["2025-04"].messages == 0
    assert figures.open_cases == 0
    assert figures.last_run is None
