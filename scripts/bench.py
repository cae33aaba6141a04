#!/usr/bin/env python3
"""Benchmark mailhygiene against the raw IMAP protocol floor measured in the same run.

    python scripts/bench.py                    # 100k messages, SQLite
    python scripts/bench.py --messages 20000   # quicker
    python scripts/bench.py --postgres         # also on the local PostgreSQL
    python scripts/bench.py --markdown docs/benchmarks.md

It starts a throwaway Dovecot on 127.0.0.1, writes identical generated mailboxes for
three users (same seed), and prints each figure with its ratio to the floor:

- floor, fetch: raw ``imaplib`` ``UID FETCH 1:*`` of exactly the items the index
  fetches, no parsing; floor, index: the same plus stdlib compat32 header parsing
  (the goal's reference: initial sync ≤ 1.5× this);
- initial sync, no-change resync (goal ≤ 0.3 s per 100k), resync after 1% new mail;
- threading + case linking after sync; plan computation (goal ≤ 1 s per 100k);
- moving the mail older than 365 days to another folder: raw ``UID SEARCH BEFORE`` +
  ``UID MOVE`` (floor), mailhygiene's re-verified, journaled execution (goal ≤ 1.2×),
  and imapfilter doing the same move (when installed);
- peak RSS of the sync, measured in a child process.
Needs root (Dovecot drops to its own user) and ``apt-get install dovecot-imapd``.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailhygiene.config.settings import AccountSettings, PasswordSource  # noqa: E402
from mailhygiene.devtools.dovecot import ThrowawayDovecot  # noqa: E402
from mailhygiene.devtools.mailbox import generate_bulk  # noqa: E402
from mailhygiene.imap.client import ImapMailServer  # noqa: E402
from mailhygiene.imap.headers import INDEX_HEADER_FIELDS  # noqa: E402
from mailhygiene.index import SyncRequest, sync_account  # noqa: E402
from mailhygiene.store.session import Store, open_store  # noqa: E402

FOLDER = "INBOX"
MOVE_TARGET = "Moved"
SEED = 7
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@dataclass
class Figure:
    name: str
    seconds: float
    floor: float | None = None
    goal: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.seconds / self.floor if self.floor else None


def account_for(dovecot: ThrowawayDovecot, user: str) -> AccountSettings:
    return AccountSettings(
        name=user.split("@")[0],
        host="127.0.0.1",
        port=dovecot.port,
        security="none",
        username=user,
        password=PasswordSource(env="UNUSED"),
        timeout=600,
    )


def fetch_items(condstore: bool) -> str:
    fields = " ".join(INDEX_HEADER_FIELDS)
    modseq = "MODSEQ " if condstore else ""
    return f"(UID FLAGS INTERNALDATE RFC822.SIZE {modseq}BODY.PEEK[HEADER.FIELDS ({fields})])"


def raw_floor(dovecot: ThrowawayDovecot, user: str, password: str) -> tuple[float, float]:
    """Seconds for the raw fetch, and for the raw fetch plus compat32 header parsing."""
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    imap.login(user, password)
    imap._simple_command("ENABLE", "CONDSTORE")  # type: ignore[attr-defined]
    imap.select(FOLDER, readonly=True)
    started = time.perf_counter()
    _typ, data = imap.uid("FETCH", "1:*", fetch_items(condstore=True))
    fetched = time.perf_counter()
    parser = BytesHeaderParser(policy=compat32)
    for item in data:
        if isinstance(item, tuple):
            parser.parsebytes(item[1])
    parsed = time.perf_counter()
    imap.logout()
    return fetched - started, parsed - started


def timed(func: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


def new_store(kind: str, workdir: Path) -> tuple[Store, Callable[[], None]]:
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        store = open_store(f"sqlite:///{path}")
        return store, store.close
    schema = f"mh_bench_{uuid.uuid4().hex[:8]}"
    store = open_store("postgresql://postgres@127.0.0.1/test", schema=schema)

    def drop() -> None:
        from sqlalchemy import text

        with store.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        store.close()

    return store, drop


def bench_index(
    dovecot: ThrowawayDovecot,
    user: str,
    password: str,
    kind: str,
    workdir: Path,
    count: int,
    floor_index: float,
) -> list[Figure]:
    figures: list[Figure] = []
    store, cleanup = new_store(kind, workdir)
    account = account_for(dovecot, user)
    request = SyncRequest(
        account=account.name, host=account.host, username=user, only_folders=(FOLDER,)
    )
    per_100k = count / 100_000
    try:
        with ImapMailServer(account, password) as server:
            seconds, _ = timed(lambda: sync_account(store, server, request, now=NOW))
            figures.append(
                Figure(
                    f"initial sync [{kind}]",
                    seconds,
                    floor_index,
                    "≤ 1.5× floor",
                    seconds <= 1.5 * floor_index,
                )
            )
            seconds, _ = timed(lambda: sync_account(store, server, request, now=NOW))
            figures.append(
                Figure(
                    f"no-change resync [{kind}]",
                    seconds,
                    None,
                    f"≤ {0.3 * per_100k:.2f} s",
                    seconds <= 0.3 * per_100k,
                )
            )
        extra = max(1, count // 100)
        generate_bulk(
            dovecot, user, FOLDER, extra, seed=SEED + 100 + len(kind), now=NOW, age_days=(0, 2)
        )
        with ImapMailServer(account, password) as server:
            seconds, _ = timed(lambda: sync_account(store, server, request, now=NOW))
            figures.append(Figure(f"resync after +1% ({extra} new) [{kind}]", seconds))
        figures.extend(bench_after_sync(store, account.name, kind, count))
    finally:
        cleanup()
    return figures


def bench_after_sync(store: Store, account: str, kind: str, count: int) -> list[Figure]:
    """Threading/case linking and plan computation on the indexed mailbox."""
    from mailhygiene.cases.service import link_after_sync
    from mailhygiene.config.rules import load_rules
    from mailhygiene.purge.plan import compute_plan

    policy = load_rules(ROOT / "rules.toml")
    per_100k = count / 100_000
    seconds, _ = timed(lambda: link_after_sync(store, policy, account, NOW, "bench"))
    figures = [Figure(f"thread + case linking [{kind}]", seconds)]
    seconds, computed = timed(
        lambda: compute_plan(store, policy, account=account, now=NOW, actor="bench")
    )
    planned = computed.summary.item_count  # type: ignore[attr-defined]
    figures.append(
        Figure(
            f"plan computation [{kind}]",
            seconds,
            None,
            f"≤ {1.0 * per_100k:.2f} s",
            seconds <= 1.0 * per_100k,
            note=f"{planned:,} planned",
        )
    )
    return figures


def raw_move(dovecot: ThrowawayDovecot, user: str, password: str) -> tuple[float, float, int]:
    """Raw UID SEARCH BEFORE + UID MOVE (chunked ranges); returns (search s, move s, moved)."""
    from mailhygiene.imap.wire import chunked_uid_sets

    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    imap.login(user, password)
    imap.create(MOVE_TARGET)
    imap.select(FOLDER)
    cutoff = (NOW - timedelta(days=365)).strftime("%d-%b-%Y")
    started = time.perf_counter()
    _typ, data = imap.uid("SEARCH", "BEFORE", cutoff)
    uids = [int(x) for x in data[0].split()]
    searched = time.perf_counter()
    for _batch, text in chunked_uid_sets(uids, max_uids=5000):
        imap.uid("MOVE", text, MOVE_TARGET)
    moved = time.perf_counter()
    imap.logout()
    return searched - started, moved - searched, len(uids)


def our_move(
    dovecot: ThrowawayDovecot, user: str, password: str, workdir: Path
) -> tuple[float, int]:
    """Index, plan (default 365 d, no rules), approve, and time the execution only."""
    from mailhygiene.policy import Duration, Policy
    from mailhygiene.purge.approve import approve_plan
    from mailhygiene.purge.execute import execute_plan
    from mailhygiene.purge.plan import plan_purge

    policy = Policy(
        default_keep=Duration.parse("365d"),
        quarantine_folder=MOVE_TARGET,
        auto_approve_limit=10**9,
        source_hash="bench",
    )
    store, cleanup = new_store("sqlite", workdir)
    account = account_for(dovecot, user)
    request = SyncRequest(
        account=account.name, host=account.host, username=user, only_folders=(FOLDER,)
    )
    try:
        with ImapMailServer(account, password) as server:
            sync_account(store, server, request, now=NOW)
            summary = plan_purge(store, policy, account=account.name, now=NOW, actor="planner")
            assert summary.ref is not None
            approve_plan(store, summary.ref, policy, actor="manager", now=NOW)
            seconds, report = timed(
                lambda: execute_plan(
                    store, server, policy, summary.ref or "", actor="manager", now=NOW
                )
            )
        return seconds, report.done  # type: ignore[attr-defined]
    finally:
        cleanup()


def imapfilter_move(
    dovecot: ThrowawayDovecot, user: str, password: str, workdir: Path
) -> tuple[float, int] | None:
    binary = shutil.which("imapfilter")
    if binary is None:
        return None
    config = workdir / "imapfilter.lua"
    config.write_text(
        "options.timeout = 600\noptions.create = true\n"
        f"acct = IMAP {{ server = '127.0.0.1', port = {dovecot.port}, username = '{user}', "
        f"password = '{password}' }}\n"
        f"results = acct['{FOLDER}']:is_older(365)\n"
        f"results:move_messages(acct['{MOVE_TARGET}'])\n"
    )
    started = time.perf_counter()
    subprocess.run(
        [binary, "-c", str(config)],
        check=True,
        capture_output=True,
        env={**os.environ, "HOME": str(workdir)},
    )
    seconds = time.perf_counter() - started
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    imap.login(user, password)
    _typ, data = imap.status(MOVE_TARGET, "(MESSAGES)")
    imap.logout()
    moved = int(data[0].split(b"MESSAGES ")[1].rstrip(b")")) if data and data[0] else 0
    return seconds, moved


def peak_rss_of_sync(dovecot: ThrowawayDovecot, user: str, password: str, workdir: Path) -> float:
    """Run an initial sync in a child process and return its peak RSS in MB."""
    db = workdir / "rss.db"
    code = (
        "import sys, json, resource\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from datetime import UTC, datetime\n"
        "from mailhygiene.config.settings import AccountSettings, PasswordSource\n"
        "from mailhygiene.imap.client import ImapMailServer\n"
        "from mailhygiene.index import SyncRequest, sync_account\n"
        "from mailhygiene.store.session import open_store\n"
        f"store = open_store('sqlite:///{db}')\n"
        f"acct = AccountSettings(name='rss', host='127.0.0.1', port={dovecot.port}, "
        f"security='none', username={user!r}, password=PasswordSource(env='X'), timeout=600)\n"
        f"with ImapMailServer(acct, {password!r}) as server:\n"
        f"    sync_account(store, server, SyncRequest('rss', '127.0.0.1', {user!r}, "
        f"only_folders=({FOLDER!r},)), now=datetime.now(UTC))\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return float(output.strip().splitlines()[-1])


def render(figures: list[Figure], header: str) -> str:
    lines = [
        header,
        "",
        "| figure | seconds | floor (s) | ratio | goal | met | note |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for f in figures:
        ratio = f"{f.ratio:.2f}×" if f.ratio else ""
        floor = f"{f.floor:.2f}" if f.floor else ""
        met = "" if f.ok is None else ("yes" if f.ok else "NO")
        lines.append(
            f"| {f.name} | {f.seconds:.2f} | {floor} | {ratio} | {f.goal} | {met} | {f.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="also run on local PostgreSQL")
    parser.add_argument("--skip-move", action="store_true", help="skip the move benchmarks")
    parser.add_argument("--markdown", type=Path, help="also write the results to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    count = args.messages
    figures: list[Figure] = []
    workdir = Path(tempfile.mkdtemp(prefix="mh-bench-"))
    try:
        with ThrowawayDovecot() as dovecot:
            users = {
                name: dovecot.add_user(f"{name}@bench.example")
                for name in ("index", "raw", "ours", "filter")
            }
            started = time.perf_counter()
            for name, _pw in users.items():
                if name == "index" or not args.skip_move:
                    generate_bulk(
                        dovecot, f"{name}@bench.example", FOLDER, count, seed=SEED, now=NOW
                    )
            print(
                f"generated {count:,} messages per mailbox in "
                f"{time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            user, password = "index@bench.example", users["index"]
            fetch_s, index_s = raw_floor(dovecot, user, password)
            figures.append(Figure("floor: raw UID FETCH 1:*", fetch_s))
            figures.append(Figure("floor: raw fetch + compat32 parse", index_s))
            kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
            for kind in kinds:
                figures.extend(bench_index(dovecot, user, password, kind, workdir, count, index_s))
            if not args.skip_move:
                search_s, move_s, raw_moved = raw_move(dovecot, "raw@bench.example", users["raw"])
                floor = search_s + move_s
                figures.append(
                    Figure("floor: raw UID SEARCH + UID MOVE", floor, note=f"{raw_moved:,} moved")
                )
                ours_s, ours_moved = our_move(dovecot, "ours@bench.example", users["ours"], workdir)
                figures.append(
                    Figure(
                        "purge execute (move, re-verified)",
                        ours_s,
                        floor,
                        "≤ 1.2× floor",
                        ours_s <= 1.2 * floor,
                        note=f"{ours_moved:,} moved",
                    )
                )
                peer = imapfilter_move(dovecot, "filter@bench.example", users["filter"], workdir)
                if peer is not None:
                    figures.append(
                        Figure("imapfilter move (peer)", peer[0], floor, note=f"{peer[1]:,} moved")
                    )
            rss = peak_rss_of_sync(dovecot, user, password, workdir)
            figures.append(
                Figure(
                    "peak RSS of a full sync (MB, child process)",
                    rss,
                    goal="≤ 300 MB",
                    ok=rss <= 300,
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = (
        f"mailhygiene benchmark — {count:,} messages, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    if args.json:
        print(json.dumps([{**f.__dict__, "ratio": f.ratio} for f in figures], indent=2))
    else:
        print(render(figures, header))
    if args.markdown:
        args.markdown.write_text(render(figures, "## " + header) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
