"""Connection faults: drop, stall or truncate the IMAP connection during sync and purge.

A ``FaultProxy`` sits between mailhygiene and Dovecot. An undisturbed run first tells
how many bytes an operation moves each way; every trial then breaks a fresh world's
connection at a seeded random byte offset in one direction. mailhygiene must either
complete or fail with one ``ConnectError`` (one line, naming the server and what to
do) — never another exception — and the next, undisturbed run must complete with
nothing lost: the index equals the server, and a purge passes ``world.check_purge``.
``MH_CONN_SEED`` repeats a run.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailhygiene.config.settings import AccountSettings
from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.errors import ConnectError, MailhygieneError
from mailhygiene.store.models import Message
from tests.faults.proxy import Direction, Fault, FaultKind, FaultProxy
from tests.faults.world import (
    OLD,
    RECENT,
    FaultWorld,
    check_purge,
    drop_world,
    index_mismatches,
    new_world,
    quote_folder,
)

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

TIMEOUT = 1.5  # AccountSettings.timeout of a faulted run: how long a stalled read waits
PATIENT = 30.0  # the timeout of undisturbed runs (calibration, the next run)
FAULTS: tuple[tuple[FaultKind, Direction], ...] = (
    ("drop", "down"),
    ("truncate", "down"),
    ("stall", "down"),
    ("drop", "up"),
    ("truncate", "up"),
    ("stall", "up"),
)


@dataclass
class Outcome:
    fault: Fault
    struck: bool
    error: str | None  # the one-line message, or None when the run completed


@pytest.fixture
def proxy(dovecot: ThrowawayDovecot) -> Iterator[FaultProxy]:
    with FaultProxy((dovecot.host, dovecot.port), stall_limit=5 * TIMEOUT) as running:
        yield running


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("MH_CONN_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\nconnection faults seed {value} (set MH_CONN_SEED={value} to repeat)")
    return value


def _via(world: FaultWorld, proxy: FaultProxy, timeout: float = PATIENT) -> AccountSettings:
    return replace(world.settings, port=proxy.port, timeout=timeout)


def _populate(world: FaultWorld, rng: random.Random, *, extra: str = "") -> None:
    for i in range(70):
        when = OLD - timedelta(days=rng.randint(0, 300)) if i < 50 else RECENT
        world.plant("INBOX", f"in{extra}-{i}", when)
    for i in range(40):
        when = OLD - timedelta(days=rng.randint(0, 300)) if i < 30 else RECENT
        world.plant("Archive/2024", f"ar{extra}-{i}", when)
    world.rescan()


def _judge_failure(error: MailhygieneError, settings: AccountSettings) -> str:
    """The one-line message, with what is wrong with it when it is not a clean
    ConnectError naming the server and what to do ("BAD: …")."""
    text = str(error)
    problems = []
    if not isinstance(error, ConnectError):
        problems.append(f"{type(error).__name__}, not ConnectError")
    if "\n" in text or f"{settings.host}:{settings.port}" not in text:
        problems.append("not one line naming the server")
    if "run the command again" not in text and "did not answer within" not in text:
        problems.append("no advice")
    return f"BAD ({'; '.join(problems)}): {text}" if problems else text


def _change_server(world: FaultWorld, rng: random.Random) -> None:
    """What an incremental sync has to pick up: new mail, flag changes, expunges."""
    for i in range(15):
        world.plant("INBOX", f"late-{i}", RECENT)
    world.rescan()
    conn = world.imap()
    conn.select(quote_folder("Archive/2024"))
    uids = conn.uid("SEARCH", "ALL")[1][0].decode().split()
    for uid in rng.sample(uids, 5):
        conn.uid("STORE", uid, "+FLAGS", "(\\Flagged $Reklamation)")
    gone = ",".join(rng.sample(uids, 4))
    conn.uid("STORE", gone, "+FLAGS", "(\\Deleted)")
    conn.uid("EXPUNGE", gone)
    conn.logout()


def _index_matches_server(world: FaultWorld) -> None:
    state = world.server_state()
    assert index_mismatches(world, state) == []
    with world.store.transaction() as session:
        rows = session.scalar(select(func.count()).select_from(Message))
    assert rows == sum(len(by_uid) for by_uid in state.messages.values())


def _calibrate_sync(
    dovecot: ThrowawayDovecot, proxy: FaultProxy, tmp: Path
) -> dict[str, tuple[int, int]]:
    """Bytes (down, up) of an undisturbed first and incremental sync of a trial world."""
    world = new_world(dovecot, f"sqlite:///{tmp / 'calibrate-sync.db'}", timeout=TIMEOUT)
    budget: dict[str, tuple[int, int]] = {}
    try:
        _populate(world, random.Random(0))
        settings = _via(world, proxy)
        for phase in ("first", "incremental"):
            proxy.arm(None)
            first = len(proxy.transcripts)
            with world.server(settings) as server:
                world.sync(server=server)
            budget[phase] = (proxy.transcripts[first].down, proxy.transcripts[first].up)
            _index_matches_server(world)
            _change_server(world, random.Random(0))
    finally:
        drop_world(world)
    return budget


def _sync_trial(
    dovecot: ThrowawayDovecot,
    proxy: FaultProxy,
    tmp: Path,
    number: int,
    rng: random.Random,
    budget: dict[str, tuple[int, int]],
    *,
    incremental: bool,
) -> Outcome:
    world = new_world(dovecot, f"sqlite:///{tmp / f'sync{number}.db'}", timeout=TIMEOUT)
    try:
        _populate(world, rng)
        settings = _via(world, proxy)
        if incremental:
            with world.server(settings) as server:
                world.sync(server=server)
            _change_server(world, rng)
        kind, direction = FAULTS[number % len(FAULTS)]
        total = budget["incremental" if incremental else "first"][0 if direction == "down" else 1]
        fault = Fault(kind, rng.randint(0, total), direction)
        proxy.arm(fault)
        first = len(proxy.transcripts)
        error = None
        faulted = _via(world, proxy, TIMEOUT)
        try:
            with world.server(faulted) as server:
                world.sync(server=server)
        except MailhygieneError as exc:
            error = _judge_failure(exc, faulted)
        struck = any(t.struck for t in proxy.transcripts[first:])
        proxy.arm(None)
        with world.server(settings) as server:  # the next run completes
            world.sync(server=server)
        _index_matches_server(world)
        return Outcome(fault, struck, error)
    finally:
        drop_world(world)


def _assert_no_bad_failures(outcomes: list[Outcome]) -> None:
    bad = [f"{o.fault}: {o.error}" for o in outcomes if o.error and o.error.startswith("BAD")]
    known = [b for b in bad if "AuthError" in b and "LOGIN => socket error" in b]
    assert bad == known, "\n".join(bad)
    assert not known, known


def _summary(outcomes: list[Outcome]) -> str:
    table: Counter[tuple[str, str, str]] = Counter()
    for o in outcomes:
        result = "completed" if o.error is None else o.error.split(":")[0][:40]
        table[
            (f"{o.fault.kind} {o.fault.direction}", "struck" if o.struck else "missed", result)
        ] += 1
    return "\n".join(f"  {k[0]:14s} {k[1]:7s} {k[2]:12s} {v}" for k, v in sorted(table.items()))


def test_faults_during_sync_fail_cleanly_and_the_next_sync_completes(
    dovecot: ThrowawayDovecot, proxy: FaultProxy, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    budget = _calibrate_sync(dovecot, proxy, tmp_path)
    print(f"undisturbed sync bytes (down, up): {budget}")
    outcomes = []
    for number in range(12):
        outcome = _sync_trial(
            dovecot, proxy, tmp_path, number, rng, budget, incremental=number % 2 == 1
        )
        print(
            f"sync trial {number:2d}: {outcome.fault} struck={outcome.struck} "
            f"-> {outcome.error or 'completed'}"
        )
        outcomes.append(outcome)
    print(_summary(outcomes))
    _assert_no_bad_failures(outcomes)
    assert sum(o.struck for o in outcomes) >= 8
    assert any(o.error for o in outcomes)


def _execute_trial(
    dovecot: ThrowawayDovecot,
    proxy: FaultProxy,
    tmp: Path,
    number: int,
    rng: random.Random,
    budget: list[tuple[int, int]],
) -> Outcome:
    world = new_world(dovecot, f"sqlite:///{tmp / f'exec{number}.db'}", timeout=TIMEOUT)
    try:
        _populate(world, rng)
        settings = _via(world, proxy)
        world.sync()
        ref = world.plan()
        world.approve(ref)
        before = world.server_state()
        kind, direction = FAULTS[number % len(FAULTS)]
        error = None
        if not budget:  # calibrate: a clean execution through the proxy, measured
            proxy.arm(None)
            first = len(proxy.transcripts)
            with world.server(settings) as server:
                world.execute(ref, server=server)
            budget.append((proxy.transcripts[first].down, proxy.transcripts[first].up))
            fault = Fault(kind, 10**9, direction)
            struck = False
        else:
            total = budget[0][0 if direction == "down" else 1]
            fault = Fault(kind, rng.randint(0, total), direction)
            proxy.arm(fault)
            first = len(proxy.transcripts)
            faulted = _via(world, proxy, TIMEOUT)
            try:
                with world.server(faulted) as server:
                    world.execute(ref, server=server)
            except MailhygieneError as exc:
                error = _judge_failure(exc, faulted)
            struck = any(t.struck for t in proxy.transcripts[first:])
            proxy.arm(None)
            if world.plan_status(ref) != "done":  # the next run completes
                with world.server(settings) as server:
                    report = world.execute(ref, server=server)
                assert report.status == "done", report
        check = check_purge(world, ref, before)
        assert check.ok, f"{fault}: {check.problems()}"
        assert check.done == check.planned, check.skip_reasons
        return Outcome(fault, struck, error)
    finally:
        drop_world(world)


def test_faults_during_purge_execute_lose_nothing_and_the_next_run_completes(
    dovecot: ThrowawayDovecot, proxy: FaultProxy, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    budget: list[tuple[int, int]] = []
    outcomes = []
    for number in range(13):
        outcome = _execute_trial(dovecot, proxy, tmp_path, number, rng, budget)
        print(
            f"execute trial {number:2d}: {outcome.fault} struck={outcome.struck} "
            f"-> {outcome.error or 'completed'}"
        )
        outcomes.append(outcome)
    print(_summary(outcomes[1:]))
    _assert_no_bad_failures(outcomes)
    assert sum(o.struck for o in outcomes) >= 8
    assert any(o.error for o in outcomes)


def _bytes_before_login_answer(dovecot: ThrowawayDovecot) -> int:
    """What the server sends before it answers LOGIN: the greeting and a CAPABILITY answer
    (imaplib asks for capabilities before logging in)."""
    import socket

    with socket.create_connection((dovecot.host, dovecot.port), timeout=5) as sock:
        received = b""
        while not received.endswith(b"\r\n"):
            received += sock.recv(4096)
        sock.sendall(b"a1 CAPABILITY\r\n")
        while b"a1 OK" not in received:
            received += sock.recv(4096)
        while not received.endswith(b"\r\n"):
            received += sock.recv(4096)
    return len(received)


@pytest.mark.parametrize(
    ("kind", "direction"),
    [
        ("truncate", "down"),
        ("drop", "down"),
        ("truncate", "up"),
    ],
)
def test_connection_lost_during_login_is_a_connect_error_not_a_wrong_password(
    dovecot: ThrowawayDovecot,
    proxy: FaultProxy,
    tmp_path: Path,
    kind: FaultKind,
    direction: Direction,
) -> None:
    """The answer to LOGIN is cut off: the user must hear "connection lost, run it again",
    not "login refused, check the password" (which sends them to rotate a good secret)."""
    world = new_world(dovecot, f"sqlite:///{tmp_path / 'mh.db'}", timeout=TIMEOUT)
    try:
        settings = _via(world, proxy, TIMEOUT)
        if direction == "down":  # inside the server's answer to LOGIN
            proxy.arm(Fault(kind, _bytes_before_login_answer(dovecot) + 10, "down"))
        else:  # inside the LOGIN command, after imaplib's "XXXX0 CAPABILITY\r\n"
            proxy.arm(Fault(kind, 18 + 3, "up"))
        with pytest.raises(MailhygieneError) as caught, world.server(settings):
            pass
        assert proxy.struck()
        assert not _judge_failure(caught.value, settings).startswith("BAD"), str(caught.value)
    finally:
        drop_world(world)


def test_faults_on_the_second_connection_fall_back_and_lose_nothing(
    dovecot: ThrowawayDovecot, proxy: FaultProxy, tmp_path: Path, seed: int
) -> None:
    """Identities are read on a second, read-only connection (one per folder) while the
    first one moves. Breaking it at any byte (while it logs in, opens the folder or
    reads) must leave the run to finish on the first connection: everything planned
    moved, nothing taken for gone."""
    rng = random.Random(seed)
    budget: tuple[int, int] | None = None
    struck = 0
    for number in range(len(FAULTS) + 1):
        world = new_world(dovecot, f"sqlite:///{tmp_path / f'reader{number}.db'}", timeout=TIMEOUT)
        try:
            _populate(world, rng)
            world.sync()
            ref = world.plan()
            world.approve(ref)
            before = world.server_state()
            first = len(proxy.transcripts)
            with world.server(_via(world, proxy, TIMEOUT)) as server:
                if budget is None:  # calibrate: an undisturbed run
                    proxy.arm(None)
                    fault = None
                else:
                    kind, direction = FAULTS[(number - 1) % len(FAULTS)]
                    total = budget[0 if direction == "down" else 1]
                    fault = Fault(kind, rng.randint(0, total), direction)
                    # the connection opened after this one: the first folder's reader
                    proxy.arm(fault)
                report = world.execute(ref, server=server)
            runs = proxy.transcripts[first:]
            if budget is None:
                assert len(runs) == 3, runs  # the first connection and one reader per folder
                budget = (runs[1].down, runs[1].up)
            else:
                assert not runs[0].struck
                struck += runs[1].struck
            print(f"reader trial {number}: {fault} struck={runs[1].struck} -> {report.status}")
            assert report.status == "done", report
            check = check_purge(world, ref, before)
            assert check.ok, f"{fault}: {check.problems()}"
            assert check.done == check.planned, check.skip_reasons
        finally:
            drop_world(world)
    assert struck >= len(FAULTS) - 2
