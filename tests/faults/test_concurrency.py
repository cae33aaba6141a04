"""Concurrency: one mutating run per account, and a tag applied mid-purge wins.

* A purge paused inside its run (account lock held, a verified batch in flight, in a
  process of its own): ``mailhygiene purge execute`` and ``mailhygiene run`` started
  meanwhile refuse with exit code 3 and say why; the paused run then finishes and loses
  nothing. The same between two threads of one process (a future web UI).
* A case link made while a purge executes — between batches in this process, or by
  ``mailhygiene case tag`` from another process while the run is paused — keeps the
  message where it is. A link made inside the few milliseconds between a batch's
  verification and its MOVE cannot stop that MOVE (IMAP has no conditional MOVE); the
  quarantine then keeps the message: final deletion re-checks cases and skips it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailhygiene.cases.linking import link_new_mail
from mailhygiene.cases.service import open_case, tag
from mailhygiene.cli.main import cli
from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.errors import SafetyRefusal
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.purge.quarantine import expunge_due
from tests.faults import purge_runner
from tests.faults.world import (
    NOW,
    OLD,
    RECENT,
    CliSetup,
    FaultWorld,
    check_purge,
    drop_world,
    new_world,
    write_cli_setup,
)

pytestmark = pytest.mark.dovecot

REPO = Path(__file__).resolve().parents[2]
BATCH = 5
CASE_REF = "REK-2025-0042"


@pytest.fixture
def world(dovecot: ThrowawayDovecot, tmp_path: Path) -> Iterator[FaultWorld]:
    """INBOX with 20 old messages (c-0 … c-19, five per batch) and 2 recent; synced."""
    setup_dir = tmp_path / "cli"
    setup_dir.mkdir()
    made = new_world(dovecot, f"sqlite:///{setup_dir / 'mh.db'}")
    for i in range(20):
        made.plant("INBOX", f"c-{i}", OLD + timedelta(hours=i))
    for i in range(2):
        made.plant("INBOX", f"r-{i}", RECENT)
    made.rescan()
    made.sync()
    open_case(made.store, made.policy, ref=CASE_REF, title="t", actor="support", now=NOW)
    yield made
    drop_world(made)


@pytest.fixture
def cli_setup(world: FaultWorld, tmp_path: Path) -> CliSetup:
    """Settings for ``mailhygiene`` on the world's database; users admin, maja, sched."""
    setup = write_cli_setup(tmp_path / "cli", world.account)
    runner = CliRunner()
    for name, role in (("admin", "admin"), ("maja", "manager"), ("sched", "scheduler")):
        result = runner.invoke(
            cli,
            ["user", "add", name, "--role", role],
            env={**setup.env, "MAILHYGIENE_ACTOR": "admin"},
        )
        assert result.exit_code == 0, result.output
    return setup


def mailhygiene(setup: CliSetup, actor: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a process of its own."""
    env = {
        **os.environ,
        **setup.env,
        "MAILHYGIENE_ACTOR": actor,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "mailhygiene", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.faults.purge_runner"])
    return context


@contextlib.contextmanager
def paused_purge(
    forkserver: ForkServerContext, world: FaultWorld, ref: str, resume_file: Path
) -> Iterator[Any]:
    """``purge_runner`` in a child, paused before its first MOVE until ``resume_file``."""
    argv = [
        "--db-url",
        world.db_url,
        "--ref",
        ref,
        "--host",
        world.account.host,
        "--port",
        str(world.account.port),
        "--user",
        world.account.username,
        "--batch-size",
        str(BATCH),
        "--pause-at",
        "move:1",
        "--resume-file",
        str(resume_file),
    ]
    receiver, sender = forkserver.Pipe(duplex=False)
    process = forkserver.Process(
        target=purge_runner.child, args=(argv, world.account.password, sender)
    )
    process.start()
    sender.close()
    try:
        for expected in ("ready", "paused"):
            assert receiver.poll(60), f"purge_runner never said {expected!r}"
            kind, payload = receiver.recv()
            assert kind == expected, payload
        yield process
        resume_file.touch()
        process.join(60)
        messages = []
        with contextlib.suppress(EOFError):
            while receiver.poll():
                messages.append(receiver.recv())
        assert process.exitcode == 0, messages
        assert [kind for kind, _ in messages] == ["report"], messages
    finally:
        resume_file.touch()
        if process.exitcode is None:
            process.kill()
            process.join()
        process.close()
        receiver.close()


def test_a_second_execute_or_run_on_the_account_refuses_while_one_runs(
    forkserver: ForkServerContext, world: FaultWorld, cli_setup: CliSetup, tmp_path: Path
) -> None:
    ref = world.plan()
    world.approve(ref)
    before = world.server_state()
    now = ("--now", NOW.isoformat())
    with paused_purge(forkserver, world, ref, tmp_path / "resume"):
        second = mailhygiene(cli_setup, "maja", "purge", "execute", ref, "--json", *now)
        scheduled = mailhygiene(cli_setup, "sched", "run", "--json", *now)
        moved_meanwhile = world.server_state().messages.get("Quarantine", {})
    for refused in (second, scheduled):
        assert refused.returncode == 3, (refused.stdout, refused.stderr)
        assert "another run" in refused.stderr
        assert "support" in refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
    assert moved_meanwhile == {}, "a refused run moved mail"
    assert world.plan_status(ref) == "done"
    check = check_purge(world, ref, before)
    assert check.ok, check.problems()
    assert check.done == 20
    # Afterwards the lock is free again: the scheduled run goes ahead.
    again = mailhygiene(cli_setup, "sched", "run", "--json", *now)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["status"] == "nothing_to_do"


def test_two_threads_of_one_process_cannot_both_run_on_the_account(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = world.plan()
    world.approve(ref)
    before = world.server_state()
    inside, release = threading.Event(), threading.Event()
    original = ImapMailServer.send_move

    def slow_move(
        self: ImapMailServer, uids: Any, destination: str
    ) -> Callable[[], dict[int, int]]:
        inside.set()
        release.wait(30)
        return original(self, uids, destination)

    monkeypatch.setattr(ImapMailServer, "send_move", slow_move)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            world.execute(ref, batch_size=BATCH)
        except BaseException as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(SafetyRefusal, match="another run"):
            world.execute(ref, batch_size=BATCH)
    finally:
        release.set()
        thread.join(60)
    assert not errors, errors
    check = check_purge(world, ref, before)
    assert check.ok, check.problems()
    assert check.done == 20


def test_a_case_linked_between_batches_keeps_its_message(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = world.plan()
    world.approve(ref)
    before = world.server_state()
    original = ImapMailServer.send_move
    calls = {"n": 0}

    def move(self: ImapMailServer, uids: Any, destination: str) -> Callable[[], dict[int, int]]:
        result = original(self, uids, destination)
        calls["n"] += 1
        if calls["n"] == 1:  # after the first batch: c-12 is in the third
            tag(
                world.store,
                world.policy,
                target="<c-12@faults.example>",
                ref=CASE_REF,
                actor="support",
                now=NOW,
            )
        return result

    monkeypatch.setattr(ImapMailServer, "send_move", move)
    report = world.execute(ref, batch_size=BATCH)
    assert report.skipped == {f"kept now: case_open {CASE_REF}": 1}
    check = check_purge(world, ref, before, protected={"c-12"})
    assert check.ok, check.problems()


def test_a_case_tagged_by_another_process_during_a_purge_wins(
    forkserver: ForkServerContext, world: FaultWorld, cli_setup: CliSetup, tmp_path: Path
) -> None:
    ref = world.plan()
    world.approve(ref)
    before = world.server_state()
    with paused_purge(forkserver, world, ref, tmp_path / "resume"):
        tagged = mailhygiene(
            cli_setup,
            "maja",
            "tag",
            "<c-17@faults.example>",
            "--case",
            CASE_REF,
            "--now",
            NOW.isoformat(),
        )
        assert tagged.returncode == 0, tagged.stderr
    check = check_purge(world, ref, before, protected={"c-17"})
    assert check.ok, check.problems()
    assert check.skip_reasons == {f"kept now: case_open {CASE_REF}": 1}


@pytest.mark.parametrize("before_expunge", ["sync", "sync and link"])
def test_a_case_linked_inside_a_batch_window_is_kept_by_the_quarantine(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch, before_expunge: str
) -> None:
    """``sync`` is what ``mailhygiene sync`` then ``mailhygiene quarantine expunge`` do;
    ``sync and link`` what ``mailhygiene run`` does (it threads new mail first)."""
    ref = world.plan()
    world.approve(ref)
    before = world.server_state()
    original = ImapMailServer.send_move
    calls = {"n": 0}

    def move(self: ImapMailServer, uids: Any, destination: str) -> Callable[[], dict[int, int]]:
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch (c-5 … c-9) is verified, not yet moved
            tag(
                world.store,
                world.policy,
                target="<c-7@faults.example>",
                ref=CASE_REF,
                actor="support",
                now=NOW,
            )
        return original(self, uids, destination)

    monkeypatch.setattr(ImapMailServer, "send_move", move)
    report = world.execute(ref, batch_size=BATCH)
    assert report.done == 20
    check = check_purge(world, ref, before)
    assert check.ok, check.problems()
    monkeypatch.undo()
    world.sync()
    if before_expunge == "sync and link":
        link_new_mail(world.store, world.policy, "support", now=NOW, actor="scheduler")
    with world.server() as server:
        final = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=31),
        )
    left = world.server_state().messages["Quarantine"]
    assert [key for key, _flags in left.values()] == ["c-7"], (
        f"mail of an open case was deleted for good from the quarantine: {final}"
    )
    assert final.expunged == 19
