"""Case-link queries on both back ends, at the sizes the linking after a first sync asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailhygiene.store import case_queries as cq
from mailhygiene.store.models import Case, CaseThread
from mailhygiene.store.session import Store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def test_active_links_of_many_threads_come_from_one_lookup_in_link_order(store: Store) -> None:
    """More threads than one statement took before (500 a statement; a first sync of 100k
    messages asks for 80k): every active link of the threads asked for, each thread's in
    link order, nothing of threads not asked for, nothing unlinked."""
    threads = [f"t{n:06d}@example" for n in range(3000)]
    with store.transaction() as session:
        open_case = Case(
            ref="REK-1", status="open", created_how="manual", opened_at=NOW, opened_by="a"
        )
        closed_case = Case(
            ref="REK-2", status="closed", created_how="manual", opened_at=NOW, opened_by="a"
        )
        session.add_all([open_case, closed_case])
        session.flush()

        def link(case: Case, thread: str, minutes: int, *, unlinked: bool = False) -> None:
            session.add(
                CaseThread(
                    case_id=case.id,
                    thread_id=thread,
                    how="manual",
                    linked_at=NOW + timedelta(minutes=minutes),
                    linked_by="a",
                    unlinked_at=NOW + timedelta(hours=1) if unlinked else None,
                )
            )
            session.flush()

        link(closed_case, threads[2999], 0)
        link(open_case, threads[2999], 1)
        link(open_case, threads[0], 2)
        link(open_case, threads[1500], 3, unlinked=True)
        link(open_case, "not-asked@example", 4)

    with store.transaction() as session:
        found = cq.active_links(session, iter(threads))
        assert cq.active_links(session, []) == {}

    assert sorted(found) == [threads[0], threads[2999]]
    assert [(row.ref, row.status) for row in found[threads[2999]]] == [
        ("REK-2", "closed"),
        ("REK-1", "open"),
    ]
    assert [row.ref for row in found[threads[0]]] == ["REK-1"]
