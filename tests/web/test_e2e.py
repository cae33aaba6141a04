"""End to end in a real browser: Debian's headless Chromium (``/usr/bin/chromium``, driven by
Playwright — never a downloaded browser) against the app served by waitress on loopback,
over a real Dovecot mailbox and SQLite.

Screenshots of every main page are written to ``$MAILHYGIENE_ARTIFACTS`` (CI can keep
them) or else to pytest's temporary directory; their paths are printed (``pytest -s``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailhygiene.purge.plan import stored_summary
from mailhygiene.store.models import AuditEvent
from tests.web.conftest import PASSWORD
from tests.web.live import CASE, Live, live_fixture  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.dovecot


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian, launched by Playwright."""
    if not CHROMIUM.exists():
        problem = "Debian's chromium is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must provide it", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="sv-SE")
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("MAILHYGIENE_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button:has-text('Log in')")
    assert page.url == f"{base}/", page.content()


def submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def snap(page: Any, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {path}")
    return path


def test_support_links_a_thread_and_the_keyword_is_on_the_server(
    live: Live, page: Any, shots: Path
) -> None:
    base = live.serve()
    log_in(page, base, "bob")
    page.goto(f"{base}/search")
    page.fill("#q", 'subject:"trasig lampa"')
    submit(page, "button:has-text('Search')")
    assert "3 message(s) match" in page.inner_text("main")
    snap(page, shots, "search")
    submit(page, "td >> text=open")
    assert "3 in every folder and account" in page.inner_text("main")
    page.fill("#link-ref", CASE)
    submit(page, "button:has-text('Link to case')")
    main = page.inner_text("main")
    assert f"Linked the conversation (3 message(s)) to {CASE}" in main
    assert f"$Reklamation_{CASE} set on 3 message(s) on the mail server" in main
    assert main.count(f"kept: case {CASE} open") == 3
    snap(page, shots, "thread")
    keyword = f"$Reklamation_{CASE}"
    inbox, sent = live.server_flags("INBOX"), live.server_flags("Sent")
    assert keyword in inbox["c0@kund.example.se"]
    assert keyword in inbox["c2@kund.example.se"]
    assert keyword in sent["c1@promix.example"]
    assert not any(keyword in flags for mid, flags in inbox.items() if mid.startswith("n"))


def test_a_manager_approves_another_managers_plan_and_executes_it(
    live: Live, page: Any, shots: Path
) -> None:
    ref = live.plan(actor="mats")
    base = live.serve()
    log_in(page, base, "maria")
    submit(page, "nav >> text=Plans")
    snap(page, shots, "plans")
    submit(page, f"text={ref}")
    assert "a manager other than mats must approve it" in page.inner_text("main")
    snap(page, shots, "plan-review")
    page.fill("#approve-comment", "Stickprov per regel granskat")
    submit(page, "button:has-text('Approve')")
    assert f"Plan {ref} approved by maria." in page.inner_text("main")
    submit(page, "button:has-text('Execute')")
    for _ in range(100):
        if stored_summary(live.store, ref).status == "done":
            break
        page.wait_for_timeout(200)
    page.reload()
    main = page.inner_text("main")
    assert "5 done, 0 skipped, 0 remaining" in main
    snap(page, shots, "plan-executed")
    assert live.server_flags("INBOX") == {}
    assert live.server_flags("Sent") == {}
    assert len(live.server_flags("Quarantine")) == 5
    submit(page, "nav >> text=Quarantine")
    assert "5 message(s)" in page.inner_text("main")
    snap(page, shots, "quarantine")


def test_support_is_refused_the_approval_page(live: Live, page: Any, shots: Path) -> None:
    ref = live.plan(actor="mats")
    base = live.serve()
    log_in(page, base, "bob")
    assert page.locator("nav >> text=Plans").count() == 0
    response = page.goto(f"{base}/plans/{ref}")
    assert response.status == 403
    main = page.inner_text("main")
    assert "needs the 'manager' role (you are 'support')" in main
    assert page.locator("button:has-text('Approve')").count() == 0
    snap(page, shots, "refused")
    with live.store.transaction() as session:
        refused = session.scalars(
            select(AuditEvent).where(AuditEvent.tag == "auth:refused", AuditEvent.actor == "bob")
        ).all()
    assert [e.subject for e in refused] == [f"web GET /plans/{ref}"]
    assert stored_summary(live.store, ref).status == "pending"


def test_screenshots_of_the_main_pages(live: Live, page: Any, shots: Path) -> None:
    live.plan(actor="mats")
    base = live.serve()
    page.goto(f"{base}/login")
    snap(page, shots, "login")
    log_in(page, base, "maria")
    assert "Mailbox size over time" in page.inner_text("main")
    snap(page, shots, "dashboard")
    page.goto(f"{base}/search?q=trasig")
    submit(page, "td >> a:text-is('Trasig lampa')")
    main = page.inner_text("main")
    assert "Hej, lampan är trasig." in main
    assert "alert(" not in page.content()
    snap(page, shots, "message")
    written = sorted(p.name for p in shots.glob("*.png"))
    assert {"login.png", "dashboard.png", "message.png"} <= set(written)
