"""Users, roles and the audit log through the CLI: bootstrap, refusals, verify, anchor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from mailhygiene.cli.auth import (
    acting_identity,
    acting_user,
    permission_of,
    requires,
    unguarded_commands,
)
from mailhygiene.cli.context import AppContext
from mailhygiene.cli.main import MailhygieneGroup, cli
from mailhygiene.roles import Permission
from mailhygiene.store.session import open_store

Run = Callable[..., Result]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailhygiene.toml"
    path.write_text('[database]\nurl = "sqlite:///mh.db"\n', encoding="utf-8")
    return path


@pytest.fixture
def run(config: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(actor, *args)``: invoke mailhygiene as ``actor`` (``$MAILHYGIENE_ACTOR``)."""
    runner = CliRunner()

    def invoke(actor: str, *args: str) -> Result:
        monkeypatch.setenv("MAILHYGIENE_ACTOR", actor)
        return runner.invoke(cli, ["--config", str(config), *args], prog_name="mailhygiene")

    return invoke


@click.group(cls=MailhygieneGroup)
def probe_cli() -> None:
    """A stand-in group whose only command needs ``read`` and says who it ran as."""


@probe_cli.command()
@requires(Permission.READ)
@click.pass_context
def probe(ctx: click.Context) -> None:
    click.echo(f"{acting_user(ctx)} {acting_identity(ctx).role}")


@pytest.fixture
def read(config: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``read(actor)``: run a command that needs only ``read``, as ``actor``.

    Used to show access is granted without depending on what a real command then does.
    """

    def invoke(actor: str) -> Result:
        monkeypatch.setenv("MAILHYGIENE_ACTOR", actor)
        return CliRunner().invoke(probe_cli, ["probe"], obj=AppContext(str(config)))

    return invoke


@pytest.fixture
def staffed(run: Run) -> Run:
    """alice (admin, the bootstrap), bob (support), maja (manager), the scheduler."""
    assert run("alice", "user", "add", "alice", "--role", "admin").exit_code == 0
    for name, role in (("bob", "support"), ("maja", "manager"), ("scheduler", "scheduler")):
        result = run("alice", "user", "add", name, "--role", role)
        assert result.exit_code == 0, result.output
    return run


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _audit(run: Run, *args: str) -> list[dict[str, Any]]:
    entries = _json(run("alice", "audit", "log", "--json", *args))
    assert isinstance(entries, list)
    return entries


def _walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_walk(command, f"{prefix}{name} "))
    return found


# ------------------------------------------------------------------ declarations


def test_every_command_declares_a_permission() -> None:
    assert unguarded_commands(cli) == []


def test_the_commands_of_this_issue_need_what_the_issue_says() -> None:
    commands = dict(_walk(cli))
    assert permission_of(commands["sync"]) is Permission.SYNC
    assert permission_of(commands["status"]) is Permission.READ
    for name in ("user add", "user list", "user disable", "user enable", "user role"):
        assert permission_of(commands[name]) is Permission.USER_MANAGE
    for name in ("audit log", "audit verify", "audit anchor"):
        assert permission_of(commands[name]) is Permission.AUDIT_READ


@pytest.mark.parametrize(
    "path", [path for path, _ in _walk(cli) if path.split()[0] in ("user", "audit")]
)
def test_help_has_an_example(path: str) -> None:
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0
    assert "Example: mailhygiene " in result.output


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_flow(run: Run, read: Run) -> None:
    refused = run("alice", "status")
    assert refused.exit_code == 3
    assert "no users are set up yet" in refused.output
    assert "mailhygiene user add alice --role admin" in refused.output

    not_admin = run("alice", "user", "add", "alice", "--role", "support")
    assert not_admin.exit_code == 3
    assert "the first one must be an admin" in not_admin.output

    added = run("alice", "user", "add", "alice", "--role", "admin")
    assert added.exit_code == 0, added.output
    assert "Added user alice with the role admin." in added.output

    assert run("alice", "user", "add", "bob", "--role", "support").exit_code == 0
    allowed = read("alice")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.output == "alice admin\n"

    users = _audit(run, "--tag", "user")
    assert [(e["subject"], e["actor"], e["data"]) for e in users] == [
        ("bob", "alice", {"role": "support", "bootstrap": False}),
        ("alice", "alice", {"role": "admin", "bootstrap": True}),
    ]
    refusals = _audit(run, "--tag", "auth:refused")
    assert [(e["actor"], e["subject"]) for e in refusals] == [("alice", "mailhygiene status")]


def test_bootstrap_works_only_while_the_table_is_empty(staffed: Run) -> None:
    result = staffed("mallory", "user", "add", "mallory", "--role", "admin")
    assert result.exit_code == 3
    assert "user 'mallory' is not allowed to use mailhygiene" in result.output


# ------------------------------------------------------------------ refusals


def test_unknown_user_is_refused_and_audited(staffed: Run) -> None:
    result = staffed("mallory", "status")
    assert result.exit_code == 3
    assert (
        "user 'mallory' is not allowed to use mailhygiene; an admin can add them with: "
        "mailhygiene user add mallory --role support"
    ) in result.output
    [refusal] = _audit(staffed, "--actor", "mallory")
    assert refusal["tag"] == "auth:refused"
    assert refusal["subject"] == "mailhygiene status"
    assert refusal["data"]["permission"] == "read"


def test_unknown_user_cannot_sync(staffed: Run) -> None:
    assert staffed("mallory", "sync").exit_code == 3
    # bob may sync: he gets past the role check to the (empty) account list.
    result = staffed("bob", "sync")
    assert result.exit_code == 2
    assert "no [accounts.NAME]" in result.output


def test_disabled_user_is_refused_until_enabled(staffed: Run, read: Run) -> None:
    assert staffed("alice", "user", "disable", "bob").exit_code == 0
    refused = staffed("bob", "status")
    assert refused.exit_code == 3
    assert "user 'bob' is disabled" in refused.output
    assert staffed("alice", "user", "enable", "bob").exit_code == 0
    assert read("bob").output == "bob support\n"


def test_support_may_not_add_users(staffed: Run) -> None:
    result = staffed("bob", "user", "add", "carol", "--role", "support")
    assert result.exit_code == 3
    assert "mailhygiene user add needs the 'admin' role (you are 'support')" in result.output
    assert [u["name"] for u in _json(staffed("alice", "user", "list", "--json"))] == [
        "alice",
        "bob",
        "maja",
        "scheduler",
    ]
    [refusal] = _audit(staffed, "--tag", "auth", "--actor", "bob")
    assert refusal["data"]["permission"] == "user_manage"


def test_roles_gate_the_audit_log(staffed: Run, read: Run) -> None:
    support = staffed("bob", "audit", "log")
    assert support.exit_code == 3
    assert "needs the 'manager' role (you are 'support')" in support.output
    assert staffed("maja", "audit", "log").exit_code == 0
    assert read("scheduler").output == "scheduler scheduler\n"
    assert staffed("scheduler", "audit", "verify").exit_code == 3

    assert staffed("alice", "user", "role", "bob", "manager").exit_code == 0
    assert staffed("bob", "audit", "log").exit_code == 0
    [change] = _audit(staffed, "--tag", "user:role")
    assert change["data"] == {"from": "support", "to": "manager"}


def test_the_last_admin_cannot_be_removed(staffed: Run) -> None:
    disabled = staffed("alice", "user", "disable", "alice")
    assert disabled.exit_code == 3
    assert "would leave no enabled admin" in disabled.output
    assert staffed("alice", "user", "role", "alice", "support").exit_code == 3
    assert staffed("alice", "user", "role", "maja", "admin").exit_code == 0
    assert staffed("alice", "user", "role", "alice", "support").exit_code == 0
    assert staffed("alice", "user", "list").exit_code == 3


def test_user_mistakes_are_user_errors(staffed: Run) -> None:
    assert staffed("alice", "user", "add", "bob", "--role", "manager").exit_code == 1
    assert staffed("alice", "user", "disable", "nobody").exit_code == 1
    assert staffed("alice", "user", "add", "two words", "--role", "support").exit_code == 1
    assert staffed("alice", "user", "add", "x", "--role", "root").exit_code == 2


# ------------------------------------------------------------------ audit verify / anchor


def _tamper(tmp_path: Path, statement: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'mh.db'}")
    try:
        with store.engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        store.close()


def test_audit_verify_ok_then_broken(staffed: Run, tmp_path: Path) -> None:
    ok = staffed("alice", "audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "Audit log intact: 4 entries" in ok.output
    assert _json(staffed("maja", "audit", "verify", "--json"))["ok"] is True

    _tamper(tmp_path, 'UPDATE audit_events SET data = \'{"role":"admin"}\' WHERE seq = 2')
    broken = staffed("alice", "audit", "verify")
    assert broken.exit_code == 3
    assert "the audit log is broken at seq 2" in broken.output

    as_json = staffed("alice", "audit", "verify", "--json")
    assert as_json.exit_code == 3
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["first_bad_seq"], report["count"]) == (False, 2, 1)


def test_audit_verify_finds_a_deleted_entry(staffed: Run, tmp_path: Path) -> None:
    _tamper(tmp_path, "DELETE FROM audit_events WHERE seq = 3")
    broken = staffed("alice", "audit", "verify")
    assert broken.exit_code == 3
    assert "broken at seq 3: entry 3 is missing" in broken.output


def test_audit_anchor_and_verify_against_it(staffed: Run, tmp_path: Path) -> None:
    anchor_file = tmp_path / "anchor.json"
    shown = _json(staffed("alice", "audit", "anchor", "--out", str(anchor_file), "--json"))
    assert shown["seq"] == 4
    assert json.loads(anchor_file.read_text()) == shown
    assert staffed("alice", "user", "add", "carol", "--role", "support").exit_code == 0
    assert staffed("alice", "audit", "verify", "--anchor", str(anchor_file)).exit_code == 0

    _tamper(tmp_path, "DELETE FROM audit_events WHERE seq >= 4")
    plain = staffed("alice", "audit", "verify")
    assert plain.exit_code == 0  # a cut-off tail is self-consistent ...
    anchored = staffed("alice", "audit", "verify", "--anchor", str(anchor_file))
    assert anchored.exit_code == 3  # ... but not against the anchor
    assert "broken at seq 4" in anchored.output


def test_audit_log_rejects_an_unknown_tag(staffed: Run) -> None:
    result = staffed("alice", "audit", "log", "--tag", "plan:approved")
    assert result.exit_code == 2
    assert "neither a tag" in result.output


def test_audit_anchor_on_an_empty_log_is_a_user_error(run: Run, tmp_path: Path) -> None:
    # Only reachable by a user who exists, so bootstrap and then empty the log by hand.
    assert run("alice", "user", "add", "alice", "--role", "admin").exit_code == 0
    _tamper(tmp_path, "DELETE FROM audit_events")
    result = run("alice", "audit", "anchor")
    assert result.exit_code == 1
    assert "the audit log is empty" in result.output
