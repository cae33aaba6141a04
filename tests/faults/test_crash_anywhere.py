"""Crash anywhere in a purge: ``kill -9`` a real execution against Dovecot, then resume.

Each trial builds a fresh account and database (~170 messages in three folders, about
155 of them planned, among them messages without a Message-ID and one Message-ID filed
in two folders), protects some of them (an open case before the plan; a case link, a
legal hold and the case keyword set by another client after it), runs
``purge_runner`` in a child process with batches of 7 and SIGKILLs it — after a seeded
random delay, or right before / right after sending / right after the answer of the
N-th server write. The plan is then resumed in this process and judged against the
server by ``world.check_purge``: nothing wrongly moved or deleted, nothing planned
unaccounted for, no duplicates, the audit chain intact, the index equal to the server.

``MH_CRASH_SEED`` repeats a run; ``MH_CRASH_TRIALS`` sets the number of random-delay
trials (default 50, plus 8 at fixed server writes and one undisturbed calibration run).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.context import ForkServerContext
from pathlib import Path

import pytest

from mailhygiene.cases.service import open_case, tag
from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.errors import StoreError
from mailhygiene.holds import place_hold
from mailhygiene.policy import PurgeAction
from mailhygiene.store.session import open_store
from tests.faults import purge_runner
from tests.faults.world import (
    NOW,
    OLD,
    RECENT,
    FaultWorld,
    PurgeCheck,
    check_purge,
    drop_world,
    fault_policy,
    new_world,
    quote_folder,
)
from tests.store_fixtures import POSTGRES_URL

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

FOLDERS = (("INBOX", 55, 8), ("Archive/2024", 50, 5), ("Kunder/Återköp", 40, 5))
CASE_REF = "REK-2025-0042"
HOLD = "tvist-2026"
BATCH = 7
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 60.0
FIXED_KILLS = (
    *(f"move:{batch}:{when}" for when in ("before", "sent", "after") for batch in (1, 9)),
    "delete:5:sent",
    "delete:5:after",
)

Database = Callable[[int], tuple[str, str | None]]  # trial number -> (url, schema)


@dataclass
class Trial:
    """One kill and what the resumed plan left behind."""

    number: int
    seed: int
    action: PurgeAction
    kill: str  # "delay 0.412s", "move:9:sent" or "none"
    killed: bool = False
    seconds: float = 0.0
    exec_seconds: float = 0.0
    reconciled: dict[str, int] = field(default_factory=dict)
    check: PurgeCheck = field(default_factory=PurgeCheck)


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    """Children forked from a process that has already imported mailhygiene (fast start)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.faults.purge_runner"])
    return context


def _populate(world: FaultWorld, rng: random.Random) -> set[str]:
    """Plant the mailbox (in a random UID order) and return the keys that must survive."""

    # Dovecot numbers new Maildir files in name order, which starts with the date: random
    # dates put the special messages at random UIDs, so kills land next to them too.
    def old() -> datetime:
        return OLD - timedelta(days=rng.randint(0, 300), seconds=rng.randint(0, 86399))

    Spec = tuple[str, str, datetime, str | None, str | None]  # folder key date msgid subject
    specs: list[Spec] = []
    for folder, old_count, recent in FOLDERS:
        short = folder.split("/")[0][:3].lower()
        for i in range(old_count + rng.randint(-3, 3)):
            specs.append((folder, f"{short}-old-{i}", old(), "", None))
        for i in range(recent):
            specs.append(
                (folder, f"{short}-new-{i}", RECENT - timedelta(days=rng.randint(0, 30)), "", None)
            )
        # malformed but ordinary: mail without a Message-ID is planned like the rest
        specs.append((folder, f"{short}-noid", old(), None, None))
    # one Message-ID filed in two folders (a copy kept twice): both copies are planned
    specs.append(("INBOX", "dup-a", old(), "<same-copy@faults.example>", None))
    specs.append(("Kunder/Återköp", "dup-b", old(), "<same-copy@faults.example>", None))
    protected = {
        "case-before": "INBOX",
        "case-after": "Archive/2024",
        "hold-1": "Archive/2024",
        "hold-2": "Kunder/Återköp",
        "keyword": "INBOX",
    }
    for key, folder in protected.items():
        subject = f"Fault test {key} holdme" if key.startswith("hold") else None
        specs.append((folder, key, old(), "", subject))
    for folder, key, received, message_id, subject in specs:
        world.plant(folder, key, received, message_id=message_id, subject=subject)
    world.rescan()
    return set(protected)


def build_trial_world(world: FaultWorld, rng: random.Random) -> tuple[str, set[str]]:
    """Populate, sync, link a case, plan, approve, then protect more; returns (ref, protected)."""
    protected = _populate(world, rng)
    world.sync()
    open_case(
        world.store, world.policy, ref=CASE_REF, title="trasig leverans", actor="support", now=NOW
    )
    tag(
        world.store,
        world.policy,
        target="<case-before@faults.example>",
        ref=CASE_REF,
        actor="support",
        now=NOW,
    )
    ref = world.plan()
    world.approve(ref)
    # Between plan and execute: a case link, a hold and the case keyword from another client.
    tag(
        world.store,
        world.policy,
        target="<case-after@faults.example>",
        ref=CASE_REF,
        actor="support",
        now=NOW,
    )
    place_hold(
        world.store, name=HOLD, query="subject:holdme", reason="court case", actor="admin", now=NOW
    )
    conn = world.imap()
    conn.select(quote_folder("INBOX"))
    _typ, data = conn.uid("SEARCH", "HEADER", "X-Fault-Key", "keyword")
    conn.uid("STORE", data[0].decode(), "+FLAGS", "($Reklamation)")
    conn.logout()
    return ref, protected


def _run_child(
    forkserver: ForkServerContext,
    world: FaultWorld,
    ref: str,
    action: PurgeAction,
    *,
    delay: float | None,
    die_at: str | None,
    hold_outcomes: bool = False,
) -> tuple[bool, float]:
    """Run ``purge_runner`` in a child; SIGKILL it ``delay`` s after it is ready (or let it
    kill itself at ``die_at``; with ``hold_outcomes`` it never journals a batch's outcome).
    Returns (killed, seconds from ready to exit)."""
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
        "--action",
        action.value,
    ]
    if world.schema:
        argv += ["--schema", world.schema]
    if die_at:
        argv += ["--die-at", die_at]
    if hold_outcomes:
        argv.append("--hold-outcomes")
    receiver, sender = forkserver.Pipe(duplex=False)
    process = forkserver.Process(
        target=purge_runner.child, args=(argv, world.account.password, sender)
    )
    process.start()
    sender.close()
    messages: list[tuple[str, object]] = []
    try:
        if not receiver.poll(READY_TIMEOUT):
            raise AssertionError("purge_runner did not get ready in time")
        kind, payload = receiver.recv()
        if kind != "ready":
            raise AssertionError(f"purge_runner failed to start:\n{payload}")
        ready = time.monotonic()
        if delay is not None:
            process.join(delay)
            if process.exitcode is None:
                process.kill()
        process.join(RUN_TIMEOUT)
        elapsed = time.monotonic() - ready
        with contextlib.suppress(EOFError):
            while receiver.poll():
                messages.append(receiver.recv())
        code = process.exitcode
    finally:
        if process.exitcode is None:
            process.kill()
            process.join()
        process.close()
        receiver.close()
    errors = [payload for kind, payload in messages if kind == "error"]
    if errors or code not in (0, -signal.SIGKILL):
        raise AssertionError(f"purge_runner failed (exit {code}):\n{errors}")
    return code == -signal.SIGKILL, elapsed


def run_trial(
    forkserver: ForkServerContext,
    dovecot: ThrowawayDovecot,
    database: Database,
    number: int,
    seed: int,
    action: PurgeAction,
    *,
    delay: float | None,
    die_at: str | None,
) -> Trial:
    """A fresh world, a killed execution, a resume in this process, and the checks."""
    started = time.monotonic()
    url, schema = database(number)
    world = new_world(dovecot, url, schema=schema, policy=fault_policy(action=action))
    kill = die_at or (f"delay {delay:.3f}s" if delay is not None else "none")
    trial = Trial(number, seed, action, kill)
    try:
        ref, protected = build_trial_world(world, random.Random(seed))
        before = world.server_state()
        trial.killed, trial.exec_seconds = _run_child(
            forkserver, world, ref, action, delay=delay, die_at=die_at
        )
        if world.plan_status(ref) != "done":  # it was killed before finishing: resume
            report = world.execute(ref, batch_size=BATCH)
            trial.reconciled = report.reconciled
            assert report.status == "done", report
            assert report.remaining == 0, report
        trial.check = check_purge(world, ref, before, protected=protected)
    finally:
        drop_world(world)
    trial.seconds = time.monotonic() - started
    return trial


def crash_table(trials: list[Trial]) -> str:
    """The figures for the issue note, as a Markdown table."""
    lines = [
        "| trials | action, kill | killed mid-run | planned | done | skipped (protected) "
        "| wrongly removed | unaccounted | duplicates | ledger/index problems | audit ok "
        "| in-flight items reconciled |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        kind = {"delay": "random delay", "none": "none (calibration)"}.get(
            trial.kill.split()[0], "at a server write"
        )
        groups.setdefault(f"{trial.action.value}, {kind}", []).append(trial)
    for name, group in sorted(groups.items()):
        reconciled: Counter[str] = Counter()
        for trial in group:
            reconciled.update(trial.reconciled)
        lines.append(
            f"| {len(group)} | {name} | {sum(t.killed for t in group)} "
            f"| {sum(t.check.planned for t in group)} | {sum(t.check.done for t in group)} "
            f"| {sum(t.check.skipped for t in group)} "
            f"| {sum(len(t.check.wrongly_removed) for t in group)} "
            f"| {sum(len(t.check.unaccounted) for t in group)} "
            f"| {sum(len(t.check.duplicates) for t in group)} "
            f"| {sum(len(t.check.ledger) + len(t.check.index) for t in group)} "
            f"| {sum(t.check.audit_ok for t in group)}/{len(group)} "
            f"| {', '.join(f'{v} {k}' for k, v in sorted(reconciled.items())) or '-'} |"
        )
    return "\n".join(lines)


def _campaign(
    forkserver: ForkServerContext,
    dovecot: ThrowawayDovecot,
    database: Database,
    *,
    random_trials: int,
    fixed: tuple[str, ...],
    label: str,
) -> list[Trial]:
    master_seed = int(os.environ.get("MH_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\n{label}: master seed {master_seed} (set MH_CRASH_SEED={master_seed} to repeat)")
    master = random.Random(master_seed)
    trials = [
        run_trial(
            forkserver,
            dovecot,
            database,
            0,
            master.randrange(2**32),
            PurgeAction.MOVE,
            delay=None,
            die_at=None,
        )
    ]
    undisturbed = [trials[0].exec_seconds]
    schedule: list[tuple[PurgeAction, float | None, str | None]] = []
    for number in range(random_trials):
        action = PurgeAction.DELETE if number % 5 == 4 else PurgeAction.MOVE
        schedule.append((action, master.random(), None))  # a fraction of the run's length
    schedule += [(PurgeAction(spec.split(":")[0]), None, spec) for spec in fixed]
    failures: list[str] = []
    for number, (action, fraction, die_at) in enumerate(schedule, start=1):
        seed = master.randrange(2**32)
        # Kill within the time an undisturbed run takes here (the median of those seen).
        delay = None if fraction is None else fraction * statistics.median(undisturbed)
        trial = run_trial(
            forkserver, dovecot, database, number, seed, action, delay=delay, die_at=die_at
        )
        trials.append(trial)
        if delay is not None and not trial.killed:
            undisturbed.append(trial.exec_seconds)
        verdict = "ok" if trial.check.ok else "FAIL " + trial.check.problems()
        print(
            f"trial {number:3d} seed {seed:10d} {action.value:6s} kill {trial.kill:15s} "
            f"killed={trial.killed!s:5s} reconciled={trial.reconciled} "
            f"({trial.seconds:.1f}s) {verdict}"
        )
        if not trial.check.ok:
            failures.append(
                f"trial {number} (seed {seed}, {action.value}, kill {trial.kill}): "
                f"{trial.check.problems()}"
            )
    print(crash_table(trials))
    assert not failures, "\n".join(failures)
    return trials


def test_kill_9_anywhere_then_resume_loses_nothing(
    forkserver: ForkServerContext, dovecot: ThrowawayDovecot, tmp_path: Path
) -> None:
    random_trials = int(os.environ.get("MH_CRASH_TRIALS", "50"))

    def sqlite(number: int) -> tuple[str, str | None]:
        return f"sqlite:///{tmp_path / f'trial{number}.db'}", None

    trials = _campaign(
        forkserver,
        dovecot,
        sqlite,
        random_trials=random_trials,
        fixed=FIXED_KILLS,
        label="crash anywhere (SQLite)",
    )
    killed = sum(t.killed for t in trials)
    assert killed >= 0.6 * len(trials), f"only {killed} of {len(trials)} kills landed mid-run"


@pytest.fixture
def postgres_schemas() -> Database:
    """Fresh PostgreSQL schemas (one per trial), or a skip when the server is unreachable."""
    try:
        open_store(POSTGRES_URL, migrate=False).close()
    except StoreError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable ({exc}); CI must provide it", pytrace=False)
        pytest.skip(f"PostgreSQL is not reachable: {exc}")

    def schema(_number: int) -> tuple[str, str | None]:
        return POSTGRES_URL, f"mh_fault_{uuid.uuid4().hex}"

    return schema


@pytest.mark.postgres
def test_kill_9_on_postgresql(
    forkserver: ForkServerContext, dovecot: ThrowawayDovecot, postgres_schemas: Database
) -> None:
    """The same, fewer times, with the journal in PostgreSQL (row locks, not SQLite's)."""
    _campaign(
        forkserver,
        dovecot,
        postgres_schemas,
        random_trials=int(os.environ.get("MH_CRASH_PG_TRIALS", "3")),
        fixed=("move:3:sent", "move:3:after"),
        label="crash anywhere (PostgreSQL)",
    )


def _move_call_holding(world: FaultWorld, ref: str, key: str) -> int:
    """Which ``move`` call (1-based) carries the message ``key``, batches being 7 per folder."""
    planted = world.planted[key]
    state = world.server_state()
    calls = 0
    for folder in sorted({item.folder for item in world.items(ref)}):
        uids = sorted(item.uid for item in world.items(ref) if item.folder == folder)
        for start in range(0, len(uids), BATCH):
            calls += 1
            keys = {state.key_at(folder, uid) for uid in uids[start : start + BATCH]}
            if planted.key in keys:
                return calls
    raise AssertionError(f"{key} is not planned")


@pytest.mark.parametrize("key", ["inb-noid", "dup-a"])
def test_kill_right_after_moving_an_awkward_message(
    forkserver: ForkServerContext, dovecot: ThrowawayDovecot, tmp_path: Path, key: str
) -> None:
    """The kill lands after the MOVE of the batch holding a message without a Message-ID
    (or with one that is also filed elsewhere): resume must still find it in quarantine."""
    world = new_world(dovecot, f"sqlite:///{tmp_path / 'mh.db'}")
    try:
        ref, protected = build_trial_world(world, random.Random(7))
        before = world.server_state()
        call = _move_call_holding(world, ref, key)
        killed, _ = _run_child(
            forkserver, world, ref, PurgeAction.MOVE, delay=None, die_at=f"move:{call}:after"
        )
        assert killed
        report = world.execute(ref, batch_size=BATCH)
        check = check_purge(world, ref, before, protected=protected)
        assert check.ok, f"{check.problems()}; reconciled {report.reconciled}"
    finally:
        drop_world(world)


@pytest.mark.parametrize("when", ["before", "sent"])
def test_kill_with_two_batches_in_flight_then_resume_settles_both(
    forkserver: ForkServerContext, dovecot: ThrowawayDovecot, tmp_path: Path, when: str
) -> None:
    """Moves are pipelined: batch N is marked in flight while batch N-1's move is still
    unread. A kill at batch N's move leaves both in flight (N-1 moved on the server, its
    outcome never recorded; N marked, and sent or not); the resume settles both.

    Batch N-1's outcome is held back (``hold_outcomes``): otherwise the journal thread
    may record it between reading it and sending batch N, and only N is left in flight."""
    world = new_world(dovecot, f"sqlite:///{tmp_path / 'mh.db'}")
    try:
        ref, protected = build_trial_world(world, random.Random(11))
        before = world.server_state()
        killed, _ = _run_child(
            forkserver,
            world,
            ref,
            PurgeAction.MOVE,
            delay=None,
            die_at=f"move:2:{when}",
            hold_outcomes=True,
        )
        assert killed
        left = Counter(item.batch for item in world.items(ref) if item.state == "in_flight")
        assert set(left) == {1, 2}, left  # two batches, each as a whole
        report = world.execute(ref, batch_size=BATCH)
        completed = report.reconciled["completed before the interruption"]
        if when == "before":  # batch 2 was never sent: back to planned, verified again
            assert completed == left[1]
            assert report.reconciled["not yet acted on; will be re-verified"] == left[2]
        else:  # batch 2's MOVE left the socket: the server may have done it already
            assert left[1] <= completed <= left[1] + left[2]
        check = check_purge(world, ref, before, protected=protected)
        assert check.ok, f"{check.problems()}; reconciled {report.reconciled}"
    finally:
        drop_world(world)


@pytest.mark.parametrize("when", ["sent", "after"])
def test_kill_while_the_second_connection_reads_then_resume_settles(
    forkserver: ForkServerContext, dovecot: ThrowawayDovecot, tmp_path: Path, when: str
) -> None:
    """Batch 3's identities are read on the second, read-only connection while batch 2's
    move is on the server: a kill there leaves batch 2 in flight (sent, maybe moved) and
    perhaps batch 1 (moved, its outcome not yet recorded); the resume settles them."""
    world = new_world(dovecot, f"sqlite:///{tmp_path / 'mh.db'}")
    try:
        ref, protected = build_trial_world(world, random.Random(13))
        before = world.server_state()
        killed, _ = _run_child(
            forkserver, world, ref, PurgeAction.MOVE, delay=None, die_at=f"read:2:{when}"
        )
        assert killed
        left = Counter(item.batch for item in world.items(ref) if item.state == "in_flight")
        assert 2 in left, left
        assert set(left) <= {1, 2}, left
        report = world.execute(ref, batch_size=BATCH)
        assert sum(report.reconciled.values()) == sum(left.values()), report.reconciled
        check = check_purge(world, ref, before, protected=protected)
        assert check.ok, f"{check.problems()}; reconciled {report.reconciled}"
        assert check.done + check.skipped == check.planned
    finally:
        drop_world(world)
