"""Logging in and out, sessions, CSRF, the reverse-proxy header, and every route's permission."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from mailhygiene.roles import Permission
from mailhygiene.store.models import AuditEvent
from mailhygiene.users import disable_user, set_password
from mailhygiene.web.auth import PUBLIC, permission_of, unguarded_endpoints
from tests.web.conftest import PASSWORD, Site, csrf_of, login, post


def refusals(site: Site) -> list[AuditEvent]:
    with site.store.transaction() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == "auth:refused")))


def test_every_route_declares_a_permission(site: Site) -> None:
    assert unguarded_endpoints(site.app) == []
    declared = {e: permission_of(v) for e, v in site.app.view_functions.items() if e != "static"}
    assert declared["auth.login"] == PUBLIC
    assert declared["auth.logout"] == PUBLIC
    assert declared["plans.review"] is Permission.PLAN_APPROVE
    assert declared["plans.approve"] is Permission.PLAN_APPROVE
    assert declared["plans.execute"] is Permission.PLAN_EXECUTE
    assert declared["mail.link"] is Permission.TAG
    assert declared["mail.open_case"] is Permission.CASE_MANAGE
    assert declared["quarantine.restore"] is Permission.QUARANTINE_RESTORE
    assert declared["dashboard.index"] is Permission.READ


def test_a_view_without_a_permission_is_found(site: Site) -> None:
    site.app.add_url_rule("/forgotten", "forgotten", lambda: "open to all")
    assert unguarded_endpoints(site.app) == ["forgotten"]


def test_pages_send_strangers_to_the_login_page(site: Site) -> None:
    response = site.client().get("/search?q=x")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/search?q%3Dx")


def test_login_and_logout(site: Site) -> None:
    client = site.client()
    response = login(client, "bob", PASSWORD)
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert "bob · support" in page.get_data(as_text=True)
    token = csrf_of(page.get_data(as_text=True))
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 302
    assert client.get("/").status_code == 302


def test_login_returns_to_where_the_user_was_going_but_never_off_site(site: Site) -> None:
    client = site.client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    data = {"name": "bob", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data={**data, "next": "/search"}).headers["Location"] == "/search"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example"):
        client = site.client()
        token = csrf_of(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={**data, "csrf_token": token, "next": evil})
        assert response.headers["Location"] == "/", evil


def test_wrong_password_unknown_user_and_no_password_get_one_answer_and_are_audited(
    site: Site,
) -> None:
    with site.store.transaction() as session:
        from mailhygiene.store.models import User

        user = session.scalar(select(User).where(User.name == "mats"))
        assert user is not None
        user.password_hash = None
    answers = set()
    for name, password in (("bob", "wrong password!"), ("nobody", PASSWORD), ("mats", PASSWORD)):
        response = login(site.client(), name, password)
        assert response.status_code == 401
        text = response.get_data(as_text=True)
        answers.add("wrong user name or password" in text)
        assert PASSWORD not in text
    assert answers == {True}
    audited = refusals(site)
    assert [e.actor for e in audited] == ["bob", "nobody", "mats"]
    assert all(e.subject == "web login" for e in audited)
    assert all(PASSWORD not in e.data for e in audited)


def test_repeated_failures_are_throttled_per_name(site: Site) -> None:
    for _ in range(5):
        assert login(site.client(), "bob", "not the password").status_code == 401
    throttled = login(site.client(), "bob", PASSWORD)
    assert throttled.status_code == 429
    assert "Too many failed logins" in throttled.get_data(as_text=True)
    assert login(site.client(), "maria", PASSWORD).status_code == 302
    site.clock.advance(minutes=16)
    assert login(site.client(), "bob", PASSWORD).status_code == 302


def test_session_ends_after_idle_time(make_site: Callable[..., Site]) -> None:
    site = make_site(session_idle_minutes=30, session_max_hours=12)
    client = site.login("bob")
    site.clock.advance(minutes=29)
    assert client.get("/").status_code == 200
    site.clock.advance(minutes=29)
    assert client.get("/").status_code == 200
    site.clock.advance(minutes=31)
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert "Your session has ended" in client.get("/login").get_data(as_text=True)


def test_session_ends_after_its_longest_life_even_when_busy(make_site: Callable[..., Site]) -> None:
    site = make_site(session_idle_minutes=60, session_max_hours=2)
    client = site.login("bob")
    for _ in range(2):
        site.clock.advance(minutes=50)
        assert client.get("/").status_code == 200
    site.clock.advance(minutes=30)
    assert client.get("/").status_code == 302


def test_a_new_password_ends_existing_sessions(site: Site) -> None:
    client = site.login("bob")
    assert client.get("/").status_code == 200
    set_password(
        site.store, name="bob", password="another long password", actor="alice", now=site.clock()
    )
    assert client.get("/").status_code == 302
    assert site.login("bob", "another long password").get("/").status_code == 200


def test_a_disabled_user_is_refused_at_once(site: Site) -> None:
    client = site.login("bob")
    disable_user(site.store, name="bob", actor="alice", now=site.clock())
    response = client.get("/")
    assert response.status_code == 403
    assert "disabled" in response.get_data(as_text=True)


def test_a_form_without_its_csrf_token_is_refused(conversation: Site) -> None:
    client = conversation.login("bob")
    response = client.post("/link", data={"row": "1", "ref": "REK-2025-0042", "back": "/"})
    assert response.status_code == 400
    assert "not sent from a current page" in response.get_data(as_text=True)
    forged = client.post("/link", data={"row": "1", "ref": "REK-2025-0042", "csrf_token": "forged"})
    assert forged.status_code == 400
    other = conversation.login("maria")
    token = csrf_of(other.get("/search").get_data(as_text=True))
    stolen = client.post("/link", data={"row": "1", "ref": "REK-2025-0042", "csrf_token": token})
    assert stolen.status_code == 400


def test_logout_needs_the_token_too(site: Site) -> None:
    client = site.login("bob")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("name", "status"),
    [("bob", 403), ("maria", 200), ("mats", 200), ("alice", 200)],
)
def test_the_plan_pages_are_for_managers(site: Site, name: str, status: int) -> None:
    client = site.login(name)
    assert client.get("/plans").status_code == status


def test_support_is_refused_the_approval_page_and_it_is_audited(conversation: Site) -> None:
    from mailhygiene.purge.plan import plan_purge

    summary = plan_purge(
        conversation.store,
        conversation.policy,
        account="support",
        now=conversation.clock(),
        actor="maria",
    )
    assert summary.ref is not None
    client = conversation.login("bob")
    page = client.get(f"/plans/{summary.ref}")
    assert page.status_code == 403
    text = page.get_data(as_text=True)
    assert "needs the &#39;manager&#39; role (you are &#39;support&#39;)" in text
    assert "Approve" not in text
    refused = client.post(f"/plans/{summary.ref}/approve", data={"comment": "x"})
    assert refused.status_code in (400, 403)
    audited = [e for e in refusals(conversation) if e.actor == "bob"]
    assert audited[0].subject == f"web GET /plans/{summary.ref}"
    assert "plan_approve" in audited[0].data


@pytest.mark.parametrize(
    ("name", "restore_status"),
    [("bob", 403), ("maria", 302)],
)
def test_only_managers_may_restore_from_quarantine(
    site: Site, name: str, restore_status: int
) -> None:
    client = site.login(name)
    response = post(client, "/quarantine", "/quarantine/restore", {"account": "support"})
    assert response.status_code == restore_status


def test_a_trusted_proxy_names_the_user(make_site: Callable[..., Site]) -> None:
    site = make_site(trusted_proxies=(__import__("ipaddress").ip_network("127.0.0.1/32"),))
    client = site.client()
    page = client.get(
        "/", headers={"X-Remote-User": "maria"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert page.status_code == 200
    assert "maria · manager" in page.get_data(as_text=True)
    switched = client.get(
        "/", headers={"X-Remote-User": "bob"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert "bob · support" in switched.get_data(as_text=True)


def test_the_header_from_anywhere_else_is_ignored(make_site: Callable[..., Site]) -> None:
    site = make_site(trusted_proxies=(__import__("ipaddress").ip_network("10.0.0.5/32"),))
    client = site.client()
    response = client.get(
        "/", headers={"X-Remote-User": "alice"}, environ_base={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert response.status_code == 302
    plain = make_site()
    assert plain.client().get("/", headers={"X-Remote-User": "alice"}).status_code == 302


def test_a_proxied_name_that_is_no_user_is_refused_and_audited(
    make_site: Callable[..., Site],
) -> None:
    site = make_site(trusted_proxies=(__import__("ipaddress").ip_network("127.0.0.1/32"),))
    response = site.client().get(
        "/", headers={"X-Remote-User": "mallory"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert response.status_code == 403
    assert [e.actor for e in refusals(site)] == ["mallory"]


def test_security_headers_and_cookie_flags(make_site: Callable[..., Site]) -> None:
    site = make_site(secure_cookie=True)
    client = site.app.test_client()
    page = client.get("/login", base_url="https://mailhygiene.example")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    token = csrf_of(page.get_data(as_text=True))
    response = client.post(
        "/login",
        data={"name": "bob", "password": PASSWORD, "csrf_token": token},
        base_url="https://mailhygiene.example",
        headers={"Referer": "https://mailhygiene.example/login"},
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-mailhygiene=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie


def test_unknown_pages_and_errors_are_pages_not_tracebacks(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = site.login("maria")
    missing = client.get("/plans/P-19990101-000000")
    assert missing.status_code == 404
    assert "no plan" in missing.get_data(as_text=True)
    assert client.get("/no/such/page").status_code == 404

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("mailhygiene.web.dashboard.dashboard", broken)
    page = client.get("/")
    assert page.status_code == 500
    text = page.get_data(as_text=True)
    assert "secret internals" not in text
    assert "Traceback" not in text
    assert "server log" in text
