"""Execute one approved plan in a process of its own, so a test can ``kill -9`` it.

From a shell (the password comes from ``$MH_FAULT_PASSWORD``)::

    python -m tests.faults.purge_runner --db-url sqlite:////tmp/x/mh.db --ref P-… \\
        --host 127.0.0.1 --port 10143 --user u@promix.example [--batch-size 7] \\
        [--action move|delete] [--die-at move:3:sent]

It prints ``ready`` once logged in (a killer times its kill from there), runs
``execute_plan`` with the fault policy (``world.fault_policy``) and prints the report as
JSON. The crash test starts the same code through ``child`` in a process forked from a
forkserver that has already imported everything, which saves a second per trial.

``--die-at ACTION:N:WHEN`` makes the process SIGKILL itself at the N-th (1-based) server
write of ACTION (``move`` or ``delete``): ``before`` it is sent, ``sent`` right after
its command line left the socket (before any answer), or ``after`` the server answered
(before the journal records the outcome). A move is pipelined (``send_move`` sends it,
the function it returns reads the answer later): ``after`` is when that answer is read.
ACTION ``read`` is the N-th identity read on the second, read-only connection
(``open_reader``), which runs while the previous batch's move is on the server.
``--hold-outcomes`` keeps the journal from ever recording a batch's outcome (its thread
waits instead), so a kill leaves every batch it sent in flight, whatever the timing.
``--pause-at ACTION:N --resume-file PATH`` stops before the N-th write (announcing
``paused``) until PATH exists: the run then holds the account lock with a verified batch
in flight, for concurrency tests.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.policy import PurgeAction
from mailhygiene.purge import execute
from mailhygiene.purge.execute import ExecutionReport, execute_plan
from mailhygiene.store.session import open_store
from tests.faults.world import NOW, PASSWORD_ENV, fault_policy

PAUSE_LIMIT = 60.0
_COMMAND_WORD = {"move": b" UID MOVE ", "delete": b" UID EXPUNGE ", "read": b" UID FETCH "}
_METHOD = {"move": "send_move", "delete": "delete"}  # what execute_plan calls per batch


def then(read: Callable[[], Any], action: Callable[[], None]) -> Callable[[], Any]:
    """``read`` (a pipelined command's reader), followed by ``action``."""

    def reading() -> Any:
        outcome = read()
        action()
        return outcome

    return reading


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_die_at(spec: str) -> None:
    action, number_text, when = spec.split(":")
    if action not in _COMMAND_WORD or when not in ("before", "sent", "after"):
        raise SystemExit(f"bad --die-at {spec!r}")
    target = int(number_text)
    calls = {"n": 0, "reading": 0}

    def wrap(original: Callable[..., Any], *, pipelined: bool) -> Callable[..., Any]:
        def wrapped(self: ImapMailServer, uids: Sequence[int], *args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            call = calls["n"]
            if call == target and when == "before":
                _die()
            calls["reading"] = call
            try:
                result = original(self, uids, *args, **kwargs)
            finally:
                calls["reading"] = 0
            if call == target and when == "after":
                if pipelined:
                    return then(result, _die)
                _die()
            return result

        return wrapped

    if action == "read":
        open_reader = ImapMailServer.open_reader

        def opening(self: ImapMailServer, folder: str, uidvalidity: int) -> Any:
            reader = open_reader(self, folder, uidvalidity)
            if reader is not None:  # only the second connection's reads are counted
                fetch = wrap(ImapMailServer.fetch_identity, pipelined=False)
                reader.fetch_identity = lambda uids: fetch(reader, uids)  # type: ignore[method-assign]
            return reader

        ImapMailServer.open_reader = opening  # type: ignore[method-assign]
    else:
        method = _METHOD[action]
        original = getattr(ImapMailServer, method)
        setattr(ImapMailServer, method, wrap(original, pipelined=method == "send_move"))
    if when == "sent":
        send = imaplib.IMAP4.send

        def sending(self: imaplib.IMAP4, data: bytes) -> None:
            send(self, data)
            # why: a read's FETCH is told from the first connection's by the call it is in
            counted = calls["reading"] == target if action == "read" else calls["n"] == target
            if _COMMAND_WORD[action] in data and counted:
                _die()

        imaplib.IMAP4.send = sending  # type: ignore[method-assign,assignment]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="purge_runner")
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--ref", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--batch-size", type=int, default=7)
    parser.add_argument("--action", choices=("move", "delete"), default="move")
    parser.add_argument("--die-at")
    parser.add_argument("--hold-outcomes", action="store_true")
    parser.add_argument("--pause-at")
    parser.add_argument("--resume-file")
    return parser.parse_args(argv)


def _install_pause_at(spec: str, resume_file: str, announce: Callable[[str], None]) -> None:
    action, number_text = spec.split(":")
    target = int(number_text)
    calls = {"n": 0}
    method = _METHOD[action]
    original: Callable[..., Any] = getattr(ImapMailServer, method)

    def wrapped(self: ImapMailServer, uids: Sequence[int], *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == target:
            announce("paused")
            deadline = time.monotonic() + PAUSE_LIMIT
            while not os.path.exists(resume_file) and time.monotonic() < deadline:
                time.sleep(0.02)
        return original(self, uids, *args, **kwargs)

    setattr(ImapMailServer, method, wrapped)


def _hold_outcomes() -> None:
    def waiting(*_args: Any, **_kwargs: Any) -> None:
        time.sleep(PAUSE_LIMIT)  # the test kills this process long before

    execute._record_batch = waiting  # type: ignore[assignment]


def run(
    args: argparse.Namespace, password: str, announce: Callable[[str], None]
) -> ExecutionReport:
    if args.die_at:
        _install_die_at(args.die_at)
    if args.hold_outcomes:
        _hold_outcomes()
    if args.pause_at:
        _install_pause_at(args.pause_at, args.resume_file, announce)
    settings = AccountSettings(
        name="support",
        host=args.host,
        port=args.port,
        security="none",
        username=args.user,
        password=PasswordSource(env=PASSWORD_ENV),
    )
    policy = fault_policy(action=PurgeAction(args.action))
    store = open_store(args.db_url, schema=args.schema)
    try:
        with ImapMailServer(settings, password) as server:
            announce("ready")
            return execute_plan(
                store,
                server,
                policy,
                args.ref,
                actor="runner",
                now=NOW,
                batch_size=args.batch_size,
            )
    finally:
        store.close()


def child(argv: Sequence[str], password: str, conn: Connection) -> None:
    """A ``multiprocessing`` target: messages ``("ready", None)`` (and ``("paused", None)``),
    then ``("report", …)`` or ``("error", traceback)``."""
    try:
        report = run(parse_args(argv), password, lambda what: conn.send((what, None)))
        conn.send(("report", asdict(report)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args, os.environ[PASSWORD_ENV], lambda what: print(what, flush=True))
    print(json.dumps(asdict(report), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
