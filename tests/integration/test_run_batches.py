"""Run batches (``mailhygiene run --all-accounts --workers N``) over many real mailboxes.

Twenty accounts — twenty Dovecot users, each with two messages past retention and one
recent — on two "servers" (``127.0.0.1`` and ``localhost``: the same Dovecot, two host
names, so the per-server bound counts them apart), run by three worker processes with
``max_connections_per_server = 1``, on SQLite and on PostgreSQL:

* every account is run exactly once in the batch (the JSON outcomes, one
  ``run:scheduled`` audit entry per account and batch, and the server's folders);
* no host ever had more than one live claim (the claims' ``claimed_at`` …
  ``released_at`` intervals, which enclose each worker's IMAP connection);
* running the batch again does nothing.

A worker killed (SIGKILL) while it runs an account leaves a claim that is claimed again
once its lease has run out (``batch:reclaim``) — by a worker of the same run waiting for
that server, or by the next run of the batch — and the account still runs once. The
command line reports a failed account in one line while the others run, and exits 1
(3 when a plan awaits a manager); bad options and settings are one-line errors.
The claim queries themselves are checked on both back ends without Dovecot.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailhygiene.audit import log as audit
from mailhygiene.cli.main import cli
from mailhygiene.config.rules import load_rules
from mailhygiene.config.settings import load_settings
from mailhygiene.devtools import ImapAccount, ThrowawayDovecot
from mailhygiene.devtools.mailbox import FolderWriter, message_bytes
from mailhygiene.errors import SafetyRefusal
from mailhygiene.purge.lock import account_lock
from mailhygiene.runs import AccountResult, BatchSpec, run_batch
from mailhygiene.store import run_queries
from mailhygiene.store.models import RunClaim, RunLock
from mailhygiene.store.session import Store, open_store
from tests.net_faults import TcpProxy
from tests.store_fixtures import (  # noqa: F401
    POSTGRES_URL,
    StoreTarget,
    store_fixture,
    store_target_fixture,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
RECENT = NOW - timedelta(days=10)
HOSTS = ("127.0.0.1", "localhost")
RULES = """\
[retention]
default = "180d"

[purge]
action = "move"
quarantine_folder = "Quarantine"
auto_approve_limit = {limit}
"""
_serial = itertools.count(1)


# ------------------------------------------------------------------------------ harness


@dataclass(frozen=True)
class Mailbox:
    name: str  # the account's name in the settings
    host: str
    imap: ImapAccount
    password_env: str


@dataclass
class Fleet:
    """Dovecot users as configured accounts, a settings file, and ``mailhygiene`` to run."""

    dovecot: ThrowawayDovecot
    directory: Path
    database_url: str
    mailboxes: list[Mailbox]

    @property
    def config(self) -> Path:
        return self.directory / "mailhygiene.toml"

    @property
    def env(self) -> dict[str, str]:
        return {
            "MAILHYGIENE_CONFIG": str(self.config),
            **{m.password_env: m.imap.password for m in self.mailboxes},
        }

    def write_settings(
        self, *, max_per_server: int | str = 1, limit: int = 100_000, port: int | None = None
    ) -> None:
        (self.directory / "rules.toml").write_text(RULES.format(limit=limit), encoding="utf-8")
        lines = [
            "[database]",
            f'url = "{self.database_url}"',
            "[policy]",
            'rules = "rules.toml"',
            "[run]",
            f"max_connections_per_server = {max_per_server}",
        ]
        for mailbox in self.mailboxes:
            lines += [
                f"[accounts.{mailbox.name}]",
                f'host = "{mailbox.host}"',
                f"port = {port or mailbox.imap.port}",
                'security = "none"',
                f'username = "{mailbox.imap.username}"',
                f'password_env = "{mailbox.password_env}"',
                "timeout = 20",
            ]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def plant(self, mailbox: Mailbox, *, old: int, recent: int) -> None:
        writer = FolderWriter(self.dovecot, mailbox.imap.username, "INBOX")
        for n in range(old + recent):
            when = OLD + timedelta(hours=n) if n < old else RECENT
            raw = message_bytes(subject=f"{mailbox.name} #{n}", from_="kund@example.se", date=when)
            writer.write(raw, when)
        self.dovecot.rescan(mailbox.imap.username)

    def add_users(self) -> None:
        runner = CliRunner()
        for name, role in (("admin", "admin"), ("sched", "scheduler")):
            result = runner.invoke(
                cli,
                ["user", "add", name, "--role", role],
                env={**self.env, "MAILHYGIENE_ACTOR": "admin"},
            )
            assert result.exit_code == 0, result.output

    def mailhygiene(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real command line, in a process of its own (its workers are spawned)."""
        env = {
            **os.environ,
            **self.env,
            "MAILHYGIENE_ACTOR": "sched",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        return subprocess.run(
            [sys.executable, "-m", "mailhygiene", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def folder_sizes(self, mailbox: Mailbox) -> dict[str, int]:
        conn = imaplib.IMAP4(mailbox.imap.host, mailbox.imap.port, timeout=30)
        try:
            conn.login(mailbox.imap.username, mailbox.imap.password)
            sizes = {}
            for folder in ("INBOX", "Quarantine"):
                status, data = conn.select(folder, readonly=True)
                sizes[folder] = int(data[0] or 0) if status == "OK" else 0
            return sizes
        finally:
            conn.logout()


def _database_url(target: StoreTarget) -> str:
    if target.schema is None:
        return target.url
    # The settings file has no schema key: PostgreSQL's search_path does it (psycopg option).
    return f"{target.url}?options={quote(f'-csearch_path={target.schema}')}"


@pytest.fixture
def make_fleet(
    dovecot: ThrowawayDovecot, tmp_path: Path
) -> Iterator[Callable[[int, StoreTarget | None], Fleet]]:
    made: list[Fleet] = []

    def make(count: int, target: StoreTarget | None = None) -> Fleet:
        directory = tmp_path / f"fleet{len(made)}"
        directory.mkdir()
        url = _database_url(target) if target else f"sqlite:///{directory / 'mh.db'}"
        serial = next(_serial)
        mailboxes = []
        for i in range(count):
            username = f"run{serial:03d}-{i:02d}@promix.example"
            dovecot.add_user(username)
            mailboxes.append(
                Mailbox(f"acct-{i:02d}", HOSTS[i % 2], dovecot.account(username), f"MH_RUN_PW_{i}")
            )
        fleet = Fleet(dovecot, directory, url, mailboxes)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        for mailbox in fleet.mailboxes:
            fleet.dovecot.remove_user(mailbox.imap.username)


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (one ending as another starts: not both)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def scheduled_entries(store: Store, key: str) -> Counter[str]:
    return Counter(
        entry.subject
        for entry in audit.query(store, tag="run:scheduled")
        if entry.data.get("batch") == key
    )


# ------------------------------------------------------------------------ the batch, whole


@pytest.mark.dovecot
def test_twenty_accounts_three_workers_each_account_once_and_never_two_per_server(
    make_fleet: Callable[[int, StoreTarget | None], Fleet], store_target: StoreTarget
) -> None:
    fleet = make_fleet(20, store_target)
    for mailbox in fleet.mailboxes:
        fleet.plant(mailbox, old=2, recent=1)
    fleet.write_settings(max_per_server=1)
    fleet.add_users()
    now = ("--now", NOW.isoformat())

    first = fleet.mailhygiene("run", "--all-accounts", "--workers", "3", "--json", *now)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    outcomes = json.loads(first.stdout)
    names = sorted(m.name for m in fleet.mailboxes)
    assert sorted(o["account"] for o in outcomes) == names  # each exactly once
    assert {o["batch"] for o in outcomes} == {"2026-06-01"}  # the day, in Europe/Stockholm
    assert {(o["status"], o["planned"], o["executed"]) for o in outcomes} == {("executed", 2, 2)}

    store = store_target.open()
    try:
        assert scheduled_entries(store, "2026-06-01") == Counter(names)
        assert audit.verify(store).ok
        [opened] = audit.query(store, tag="batch:open")
        [closed] = audit.query(store, tag="batch:done")
        assert (opened.data["accounts"], closed.data["done"], closed.data["failed"]) == (20, 20, 0)
        with store.transaction() as session:
            claims = run_queries.batch_claims(session, "2026-06-01")
            assert {(c.state, c.attempts, c.outcome) for c in claims} == {
                (
                    "done",
                    1,
                    "executed",
                )
            }
            by_host: dict[str, list[tuple[datetime, datetime]]] = {}
            for claim in claims:
                assert claim.claimed_at is not None
                assert claim.released_at is not None
                by_host.setdefault(claim.host, []).append((claim.claimed_at, claim.released_at))
            holders = {claim.holder for claim in claims}
        assert sorted(by_host) == sorted(HOSTS)
        assert {host: max_overlap(spans) for host, spans in by_host.items()} == {
            "127.0.0.1": 1,
            "localhost": 1,
        }
        assert len(holders) >= 2, "the work was not shared between worker processes"

        for mailbox in fleet.mailboxes:  # each run was real: the old mail is in quarantine
            assert fleet.folder_sizes(mailbox) == {"INBOX": 1, "Quarantine": 2}, mailbox.name

        again = fleet.mailhygiene("run", "--all-accounts", "--workers", "3", "--json", *now)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == []
        assert scheduled_entries(store, "2026-06-01") == Counter(names)
        assert len(audit.query(store, tag="run:scheduled")) == 20
    finally:
        store.close()


# ---------------------------------------------------------------- a worker killed (kill -9)


@dataclass
class KilledRun:
    """A batch whose victim account's worker was killed (SIGKILL) mid-connect."""

    store: Store
    spec: BatchSpec
    victim: Mailbox
    killed: str  # the killed worker's holder, host:pid
    first: dict[str, AccountResult]  # the first invocation's results


@contextlib.contextmanager
def batch_with_a_killed_worker(
    fleet: Fleet,
    target: StoreTarget | None,
    monkeypatch: pytest.MonkeyPatch,
    *,
    bound: int,
    first_accounts: int,
) -> Iterator[KilledRun]:
    """Run the batch (2 workers, a 2 s lease) on the first ``first_accounts`` accounts;
    the victim's (the first) worker hangs in its greeting (a proxy holds it) and is
    killed; then the proxy lets everything through."""
    for mailbox in fleet.mailboxes:
        fleet.plant(mailbox, old=2, recent=1)
    for name, value in fleet.env.items():
        monkeypatch.setenv(name, value)
    victim = fleet.mailboxes[0]
    fleet.write_settings(max_per_server=bound)
    settings = load_settings(fleet.config)
    with TcpProxy((victim.imap.host, victim.imap.port), pause_after=1) as proxy:
        accounts = [settings.accounts[m.name] for m in fleet.mailboxes]
        accounts[0] = replace(accounts[0], port=proxy.port)
        spec = BatchSpec(
            key="kill-test",
            accounts=tuple(accounts[:first_accounts]),
            policy=load_rules(settings.rules_path),
            actor="scheduler",
            now=NOW,
            max_per_server=bound,
            lease=timedelta(seconds=2),
        )
        store = target.open() if target else open_store(fleet.database_url)
        killed: list[str] = []

        def kill_the_victims_worker() -> None:
            if not proxy.wait_paused(60):
                return
            with store.transaction() as session:
                claim = session.get(RunClaim, ("kill-test", victim.name))
                holder = claim.holder if claim else None
            if holder is not None:
                os.kill(int(holder.rpartition(":")[2]), signal.SIGKILL)
                killed.append(holder)
            proxy.release()

        killer = threading.Thread(target=kill_the_victims_worker)
        killer.start()
        try:
            first = run_batch(store, spec, workers=2)
            killer.join(60)
            assert killed, "the victim's worker was not killed"
            yield KilledRun(
                store,
                replace(spec, accounts=tuple(accounts)),
                victim,
                killed[0],
                {result.account: result for result in first.results},
            )
        finally:
            proxy.release()
            killer.join(60)
            store.close()


def check_recovered(run: KilledRun, fleet: Fleet) -> None:
    """Every account ran once in the batch; the victim twice claimed, once run."""
    assert run_batch(run.store, run.spec, workers=2).results == []  # nothing left
    [reclaim] = audit.query(run.store, tag="batch:reclaim")
    assert (reclaim.subject, reclaim.data["from"]) == (run.victim.name, run.killed)
    assert scheduled_entries(run.store, "kill-test") == Counter(m.name for m in fleet.mailboxes)
    with run.store.transaction() as session:
        claims = {c.account: c for c in run_queries.batch_claims(session, "kill-test")}
    assert {name: c.state for name, c in claims.items()} == dict.fromkeys(claims, "done")
    assert claims[run.victim.name].attempts == 2
    for mailbox in fleet.mailboxes:
        assert fleet.folder_sizes(mailbox) == {"INBOX": 1, "Quarantine": 2}
    assert audit.verify(run.store).ok


@pytest.mark.dovecot
def test_a_killed_workers_account_is_claimed_by_a_waiting_worker_once_its_lease_runs_out(
    make_fleet: Callable[[int, StoreTarget | None], Fleet],
    store_target: StoreTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One connection per server: the dead claim holds the victim's server until its
    # lease runs out, so the other worker waits for it and then claims the victim first.
    fleet = make_fleet(4, store_target)
    with batch_with_a_killed_worker(
        fleet, store_target, monkeypatch, bound=1, first_accounts=4
    ) as run:
        assert {name: r.error for name, r in run.first.items()} == dict.fromkeys(run.first)
        assert sorted(run.first) == sorted(m.name for m in fleet.mailboxes)
        check_recovered(run, fleet)


@pytest.mark.dovecot
def test_a_killed_workers_account_is_claimed_by_the_next_run_of_the_batch(
    make_fleet: Callable[[int, StoreTarget | None], Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(3)  # SQLite; the first run has the victim alone: nobody to take over
    with batch_with_a_killed_worker(fleet, None, monkeypatch, bound=2, first_accounts=1) as run:
        [lost] = run.first.values()
        assert lost.outcome is None
        assert "stopped (exit code -9) while running it" in (lost.error or "")
        time.sleep(run.spec.lease.total_seconds())
        second = run_batch(run.store, run.spec, workers=2)  # this machine's other accounts join
        assert sorted(r.account for r in second.results if r.outcome) == [
            m.name for m in fleet.mailboxes
        ]
        check_recovered(run, fleet)


# ------------------------------------------------------------------------ the command line


@pytest.mark.dovecot
def test_the_command_reports_a_failed_account_in_one_line_and_runs_the_others(
    make_fleet: Callable[[int, StoreTarget | None], Fleet],
) -> None:
    fleet = make_fleet(3)
    good, quiet, bad = fleet.mailboxes
    fleet.plant(good, old=2, recent=1)
    fleet.plant(quiet, old=0, recent=1)
    fleet.write_settings(max_per_server=2)
    fleet.add_users()
    wrong = ImapAccount(bad.imap.host, bad.imap.port, bad.imap.username, "not-the-password")
    fleet.mailboxes[2] = Mailbox(bad.name, bad.host, wrong, bad.password_env)
    now = ("--now", NOW.isoformat())

    first = fleet.mailhygiene("run", "--all-accounts", "--workers", "2", "--batch", "n1", *now)
    assert first.returncode == 1, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 4, first.stdout
    [failed] = [line for line in lines if line.startswith(f"{bad.name}:")]
    assert failed.startswith(f"{bad.name}: FAILED: ")
    assert "not-the-password" not in first.stdout + first.stderr
    assert any(line.startswith(f"{good.name}: 3 new") and "2 moved" in line for line in lines)
    assert any(line.startswith(f"{quiet.name}: 1 new") for line in lines)
    assert lines[-1] == "batch n1: 3 accounts: 2 done, 1 failed, 0 running, 0 pending."
    assert "Traceback" not in first.stderr

    again = fleet.mailhygiene("run", "--all-accounts", "--workers", "2", "--batch", "n1", *now)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "batch n1: nothing left to run here. 3 accounts: 2 done, 1 failed, 0 running, 0 pending."
    ]

    # One worker: in this process, account after account; a plan over the limit waits.
    fleet.plant(good, old=2, recent=0)
    fleet.write_settings(max_per_server=2, limit=1)
    one = fleet.mailhygiene("run", "--all-accounts", "--batch", "n2", "--json", *now)
    assert one.returncode == 3, one.stderr  # awaiting approval outranks a failure (1)
    statuses = {o["account"]: o["status"] for o in json.loads(one.stdout)}
    assert statuses == {
        good.name: "awaiting_approval",
        quiet.name: "nothing_to_do",
        bad.name: "failed",
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--workers", "2"), 2, "--workers and --batch go with --all-accounts"),
        (("--batch", "x"), 2, "--workers and --batch go with --all-accounts"),
        (("--account", "a", "--all-accounts"), 2, "cannot be used together"),
        (("--all-accounts", "--workers", "0"), 2, "--workers"),
        (("--all-accounts", "--batch", "no spaces"), 1, "is not a usable batch key"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    fleet = Fleet(None, tmp_path, f"sqlite:///{tmp_path / 'mh.db'}", [])  # type: ignore[arg-type]
    fleet.write_settings()
    fleet.add_users()
    result = CliRunner().invoke(
        cli, ["run", *args], env={**fleet.env, "MAILHYGIENE_ACTOR": "sched"}
    )
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["0", '"two"', "-1"])
def test_a_bad_connection_bound_names_its_key(tmp_path: Path, value: str) -> None:
    fleet = Fleet(None, tmp_path, f"sqlite:///{tmp_path / 'mh.db'}", [])  # type: ignore[arg-type]
    fleet.write_settings(max_per_server=value)
    result = CliRunner().invoke(
        cli, ["run", "--all-accounts"], env={**fleet.env, "MAILHYGIENE_ACTOR": "sched"}
    )
    assert result.exit_code == 1, result.output
    [line] = result.output.splitlines()
    assert line.startswith("error: ")
    assert "run.max_connections_per_server" in line


# --------------------------------------------------------------- the claims, on each back end


def test_claims_respect_the_bound_expire_and_finish_once(store: Store) -> None:
    t0 = datetime(2026, 6, 1, 2, tzinfo=UTC)
    lease = timedelta(minutes=3)
    hosts = {"a1": "imap.a", "a2": "imap.a", "b1": "imap.b"}

    def claim(
        holder: str, now: datetime, accounts: list[str] | None = None
    ) -> run_queries.ClaimAttempt:
        with store.transaction() as session:
            return run_queries.claim_next(
                session,
                "k",
                accounts or list(hosts),
                holder=holder,
                clock=lambda: now,
                lease=lease,
                max_per_host=1,
            )

    with store.transaction() as session:
        assert run_queries.join_batch(session, "k", hosts, actor="s", at=t0) == (True, 3)
        assert run_queries.join_batch(session, "k", hosts, actor="s", at=t0) == (False, 0)
    first = claim("h:1", t0)
    second = claim("h:2", t0)
    third = claim("h:3", t0)  # imap.a and imap.b each have their one live claim
    assert first == run_queries.ClaimAttempt(run_queries.Claim("k", "a1", "h:1"), waiting=False)
    assert second == run_queries.ClaimAttempt(run_queries.Claim("k", "b1", "h:2"), waiting=False)
    assert third == run_queries.ClaimAttempt(None, waiting=True)
    assert claim("h:3", t0, ["b1"]) == run_queries.ClaimAttempt(None, waiting=False)

    # h:1 renews; h:2 finishes and frees its slot; nothing else of imap.b is left.
    with store.transaction() as session:
        assert run_queries.renew(session, run_queries.Claim("k", "a1", "h:1"), t0 + 2 * lease)
        b1 = run_queries.Claim("k", "b1", "h:2")
        assert run_queries.finish(session, b1, outcome="executed", at=t0)
        assert not run_queries.finish(session, b1, outcome="executed", at=t0)  # once only
        run_queries.release(session, b1, t0)
    assert claim("h:3", t0 + lease).claim is None

    # h:1 stops renewing: after its lease, a1 is claimed again, naming h:1 as stale.
    later = t0 + 2 * lease + timedelta(seconds=1)
    retaken = claim("h:3", later)
    assert retaken == run_queries.ClaimAttempt(
        run_queries.Claim("k", "a1", "h:3", stale_holder="h:1"), waiting=False
    )
    with store.transaction() as session:
        assert not run_queries.renew(session, run_queries.Claim("k", "a1", "h:1"), later + lease)
        assert run_queries.finish(
            session, run_queries.Claim("k", "a1", "h:3"), outcome="nothing_to_do", at=later
        )
        assert run_queries.close_if_finished(session, "k", later) is None  # a2 is pending
    a2 = claim("h:3", later)
    assert a2.claim is None  # a1's slot is still held (by h:3)
    with store.transaction() as session:
        run_queries.release(session, run_queries.Claim("k", "a1", "h:3"), later)
    a2 = claim("h:3", later)
    assert a2.claim == run_queries.Claim("k", "a2", "h:3")
    with store.transaction() as session:
        run_queries.fail(session, a2.claim, error="no", at=later, released=later)
        closed = run_queries.close_if_finished(session, "k", later)
        assert closed == run_queries.BatchCounts("k", done=2, failed=1)
        assert run_queries.close_if_finished(session, "k", later) is None  # closed once


def test_the_run_lock_of_a_worker_whose_claim_expired_is_taken_over(store: Store) -> None:
    now = datetime(2026, 6, 1, 2, tzinfo=UTC)
    with store.transaction() as session:
        session.add(
            RunLock(
                account="a",
                holder="elsewhere.example:4242",
                acquired_at=now,
                lease_until=now + timedelta(minutes=30),
            )
        )
    with (
        pytest.raises(SafetyRefusal, match="another run"),
        account_lock(store, "a", now=now, purpose="run"),
    ):
        pass
    with account_lock(store, "a", now=now, purpose="run", stale_holder="elsewhere.example:4242"):
        with store.transaction() as session:
            holder = session.scalar(select(RunLock.holder).where(RunLock.account == "a"))
        assert holder != "elsewhere.example:4242"


def test_the_heartbeat_renews_the_claim_and_the_run_lock_while_an_account_runs(
    store: Store,
) -> None:
    from mailhygiene.runs import _Heartbeat  # the thread itself: no other way to time it

    lease = timedelta(seconds=0.6)
    start = datetime.now(UTC)
    with store.transaction() as session:
        run_queries.join_batch(session, "hb", {"a": "imap.a"}, actor="s", at=start)
        attempt = run_queries.claim_next(
            session,
            "hb",
            ["a"],
            holder="me:1",
            clock=lambda: start,
            lease=lease,
            max_per_host=1,
        )
        session.add(
            RunLock(account="a", holder="me:1", acquired_at=start, lease_until=start + lease)
        )
    assert attempt.claim is not None
    with _Heartbeat(store, lease) as heartbeat:
        heartbeat.watch(attempt.claim)
        time.sleep(1.5)  # over two leases: without renewals both would have run out
        with store.transaction() as session:
            claim = session.get(RunClaim, ("hb", "a"))
            lock = session.get(RunLock, "a")
            assert claim is not None
            assert lock is not None
            now = datetime.now(UTC)
            assert claim.lease_until is not None
            assert claim.lease_until > now
            assert lock.lease_until > now + timedelta(minutes=20)  # the run lock's own lease
