#!/usr/bin/env python3
"""Benchmark mailhygiene against the raw IMAP protocol floor measured in the same run.

    python scripts/bench.py                                  # 100k messages, SQLite
    python scripts/bench.py --messages 20000                 # quicker
    python scripts/bench.py --sizes 10k,30k,100k --postgres  # how each step scales
    python scripts/bench.py --sizes 10k,100k,1M --skip-move --postgres \\
        --plot docs/benchmarks.png --markdown docs/benchmarks.md

It starts one throwaway Dovecot on 127.0.0.1 and, for each mailbox size, writes identical
generated mailboxes (same seed) for up to four users, measures, and deletes them. Every
figure has its ratio to the floor measured in the same run at the same size:

- floor, fetch: raw ``imaplib`` ``UID FETCH`` of exactly the items the index fetches, in
  the index's batches, no parsing; floor, parse: the same plus stdlib compat32 header
  parsing (the goal's reference: initial sync ≤ 1.5× this). Dovecot builds its index and
  header cache on the first fetch after the mail is written; that cold pass is shown as
  a note and every timed figure runs on a warmed mailbox, ours and the floor alike.
  The floor and the initial syncs are measured ``--repeat`` times (default 3) in
  alternating rounds, and the medians count: on two cores one measurement varies by
  about ±10 %, as much as the margin to a goal (the moves below are repeated alike);
- initial sync (in a child process: its peak RSS, the indexing workers it starts
  included, is sampled from /proc), no-change resync (goal ≤ 0.3 s per 100k), resync
  after 1% new mail; each resync beside its floor measured just before it (raw
  ``LIST`` + ``EXAMINE`` + ``UID SEARCH``, and the fetch + compat32 parse of the new
  mail);
- threading + case linking after sync; the retention verdicts of the newly indexed mail
  (computed once per message and policy version, by the first plan after a sync or a
  change of rules.toml); ``purge plan``, the plan computed and stored with its
  hash (goal ≤ 1 s per 100k), timed three times in a row (each stores a plan, as three
  runs of the command would): the median counts and the note lists all three;
- moving the mail older than 365 days to another folder: raw ``UID SEARCH BEFORE`` +
  ``UID MOVE`` (floor), mailhygiene's re-verified, journaled execution (goal ≤ 1.2×),
  and imapfilter doing the same move (when installed); each round generates three new
  mailboxes, one per mover, and the medians count.

``--plot`` draws seconds vs mailbox size per step (log-log) and peak RSS vs size
(needs matplotlib: ``pip install -e '.[bench]'``); ``--markdown`` writes the full report
(machine, command line, tables, scaling summary, goals). Progress goes to stderr.

Large sizes: mail is written and fetched in batches and nothing per message is kept
here (the generator keeps one float per message), but the mailboxes need disk: about
5 KB per message and user under ``$TMPDIR`` (1M with ``--skip-move``: ~5 GB, plus the
SQLite file). Needs root (Dovecot drops to its own user) and ``apt-get install
dovecot-imapd`` (and ``imapfilter`` for the peer figure).
"""

from __future__ import annotations

import argparse
import imaplib
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailhygiene import __version__  # noqa: E402
from mailhygiene.config.settings import AccountSettings, PasswordSource  # noqa: E402
from mailhygiene.devtools.dovecot import ThrowawayDovecot, dovecot_binary  # noqa: E402
from mailhygiene.devtools.mailbox import BulkSummary, generate_bulk  # noqa: E402
from mailhygiene.imap.client import FETCH_BATCH, ImapMailServer  # noqa: E402
from mailhygiene.imap.headers import INDEX_HEADER_FIELDS  # noqa: E402
from mailhygiene.index import SyncRequest, sync_account  # noqa: E402
from mailhygiene.policy import Policy  # noqa: E402
from mailhygiene.processes import PARALLEL_THRESHOLD  # noqa: E402
from mailhygiene.store.session import Store, open_store  # noqa: E402

T = TypeVar("T")

FOLDER = "INBOX"
MOVE_TARGET = "Moved"
SEED = 7
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
KEEP_DAYS = 365
POSTGRES_URL = "postgresql://postgres@127.0.0.1/test"
RSS_GOAL_MB = 300.0
RSS_FLAT_GROWTH = 0.20  # "flat": the largest size needs at most 20 % more than the smallest
RSS_SAMPLE_S = 0.05
HEARTBEAT_S = 60.0
MOVE_BATCH = 5000
PLAN_RUNS = 3  # purge plan is timed this many times in a row (each stores a plan)
BENCH_EXTRA_HINT = "pip install -e '.[bench]'"

# Steps in report order: (step key, label); a step with a database runs once per kind.
STEPS = (
    ("floor.fetch", "floor: raw UID FETCH"),
    ("floor.parse", "floor: raw fetch + compat32 parse"),
    ("sync.initial", "initial sync"),
    ("floor.nochange", "floor: raw LIST + EXAMINE + UID SEARCH"),
    ("sync.nochange", "no-change resync"),
    ("floor.plus1", "floor: raw LIST + EXAMINE + UID SEARCH + fetch and parse of the new 1%"),
    ("sync.plus1", "resync after +1%"),
    ("link", "thread + case linking"),
    ("verdicts", "retention verdicts of new mail"),
    ("plan", "purge plan: computed and stored"),
    ("move.floor", "floor: raw UID SEARCH + UID MOVE"),
    ("move.ours", "purge execute (move, re-verified)"),
    ("move.imapfilter", "imapfilter move (peer)"),
    ("rss", "peak RSS of a full sync, process + workers (MB)"),
    ("rss.process", "peak RSS of a full sync, sync process alone (MB)"),
)
PLOTTED = (
    "floor.fetch",
    "floor.parse",
    "sync.initial",
    "link",
    "verdicts",
    "plan",
    "move.floor",
    "move.ours",
    "move.imapfilter",
)


@dataclass
class Figure:
    """One measured value of one step at one mailbox size (seconds, or MB for RSS)."""

    name: str
    seconds: float
    floor: float | None = None
    goal: str = ""
    ok: bool | None = None
    note: str = ""
    step: str = ""
    kind: str = ""  # "sqlite" / "postgresql" for the steps that use a database
    messages: int = 0
    unit: str = "s"

    @property
    def ratio(self) -> float | None:
        return self.seconds / self.floor if self.floor else None

    def value_text(self) -> str:
        return f"{self.seconds:.0f} MB" if self.unit == "MB" else f"{self.seconds:.2f} s"


def label(step: str, kind: str = "") -> str:
    text = dict(STEPS).get(step, step)
    if not kind:
        return text
    if text.endswith(" (MB)"):
        return f"{text.removesuffix(' (MB)')} [{kind}] (MB)"
    return f"{text} [{kind}]"


# =================================================================== progress


class Progress:
    """Progress lines on stderr, so that a run of hours shows it is alive."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.size = 0

    def line(self, text: str) -> None:
        elapsed = int(time.perf_counter() - self.started)
        clock = f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        where = f" {self.size:,} msgs" if self.size else ""
        print(f"[{clock}{where}] {text}", file=sys.stderr, flush=True)

    def figure(self, figure: Figure) -> None:
        extra = []
        if figure.ratio is not None:
            extra.append(f"{figure.ratio:.2f}× floor")
        if figure.ok is not None:
            extra.append(f"goal {figure.goal}: {'met' if figure.ok else 'NOT met'}")
        if figure.note:
            extra.append(figure.note)
        suffix = f" ({'; '.join(extra)})" if extra else ""
        self.line(f"{figure.name}: {figure.value_text()}{suffix}")

    @contextmanager
    def running(self, what: str) -> Iterator[None]:
        """Say every ``HEARTBEAT_S`` that ``what`` still runs (1M-message steps take minutes)."""
        stop = threading.Event()
        began = time.perf_counter()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                self.line(f"… {what}: still running after {time.perf_counter() - began:.0f} s")

        thread = threading.Thread(target=beat, name="bench-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


# =================================================================== mailboxes


@dataclass(frozen=True)
class Mailbox:
    """One generated user on the throwaway Dovecot."""

    port: int
    user: str
    password: str

    @property
    def account(self) -> AccountSettings:
        return AccountSettings(
            name=self.user.split("@")[0],
            host="127.0.0.1",
            port=self.port,
            security="none",
            username=self.user,
            password=PasswordSource(env="UNUSED"),
            timeout=600,
        )

    @property
    def request(self) -> SyncRequest:
        return SyncRequest(
            account=self.account.name,
            host="127.0.0.1",
            username=self.user,
            only_folders=(FOLDER,),
        )

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port)
        conn.login(self.user, self.password)
        return conn


@dataclass
class Bench:
    """One run: the Dovecot, where temporary files go, and the figures so far."""

    dovecot: ThrowawayDovecot
    workdir: Path
    progress: Progress
    kinds: tuple[str, ...]
    postgres_url: str
    skip_move: bool
    repeat: int
    figures: list[Figure] = field(default_factory=list)
    postgres_version: str = ""

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        self.progress.figure(figure)

    def generate(
        self,
        box: Mailbox,
        count: int,
        *,
        seed: int = SEED,
        age_days: tuple[float, float] = (0, 1095),
        rescan: bool = True,
    ) -> BulkSummary:
        with self.progress.running(f"generating {count:,} messages for {box.user}"):
            summary = generate_bulk(
                self.dovecot,
                box.user,
                FOLDER,
                count,
                seed=seed,
                now=NOW,
                age_days=age_days,
                rescan=rescan,
            )
        self.progress.line(
            f"generated {count:,} messages for {box.user} in {summary.seconds:.1f} s "
            f"({summary.rate:,.0f}/s, {summary.bytes_written / 2**20:,.0f} MiB)"
        )
        return summary


def timed(func: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


# =================================================================== floor: raw fetch


def fetch_items(condstore: bool) -> str:
    fields = " ".join(INDEX_HEADER_FIELDS)
    modseq = "MODSEQ " if condstore else ""
    return f"(UID FLAGS INTERNALDATE RFC822.SIZE {modseq}BODY.PEEK[HEADER.FIELDS ({fields})])"


@dataclass(frozen=True)
class FloorTiming:
    fetch: float
    parse: float
    messages: int


def raw_fetch(box: Mailbox, *, parse: bool) -> FloorTiming:
    """Raw ``UID FETCH`` of the index's items over the whole folder, in the index's batches.

    Batches of ``FETCH_BATCH`` UIDs, as the index fetches, keep memory flat at any size;
    fetch and (optionally) compat32 parse times are summed separately.
    """
    imap = box.imap()
    try:
        imap._simple_command("ENABLE", "CONDSTORE")
        imap.select(FOLDER, readonly=True)
        uidnext = _uidnext(imap)
        items = fetch_items(condstore=True)
        parser = BytesHeaderParser(policy=compat32)
        fetch_s = parse_s = 0.0
        messages = 0
        for low in range(1, uidnext, FETCH_BATCH):
            high = min(low + FETCH_BATCH - 1, uidnext - 1)
            started = time.perf_counter()
            _typ, data = imap.uid("FETCH", f"{low}:{high}", items)
            fetched = time.perf_counter()
            literals = [item[1] for item in data if isinstance(item, tuple)]
            messages += len(literals)
            if parse:
                for literal in literals:
                    parser.parsebytes(literal)
            fetch_s += fetched - started
            parse_s += time.perf_counter() - fetched
        imap.close()
    finally:
        imap.logout()
    return FloorTiming(fetch_s, parse_s, messages)


def first_fetch_from(box: Mailbox, first_uid: int) -> float:
    """Fetch the index's items of every message from ``first_uid`` on, once; seconds.

    Mail written straight into the Maildir is opened and cached by Dovecot when it is
    first fetched, which costs more than the fetch itself; whoever reads it first pays.
    """
    imap = box.imap()
    try:
        imap._simple_command("ENABLE", "CONDSTORE")
        imap.select(FOLDER, readonly=True)
        started = time.perf_counter()
        imap.uid("FETCH", f"{first_uid}:*", fetch_items(condstore=True))
        seconds = time.perf_counter() - started
        imap.close()
    finally:
        imap.logout()
    return seconds


def raw_resync(box: Mailbox, first_uid: int) -> tuple[float, int]:
    """The floor of a resync: ``LIST``, ``EXAMINE``, ``UID SEARCH`` for the UIDs from
    ``first_uid`` on, and ``UID FETCH`` + compat32 parse of what it finds; (seconds,
    messages).

    ``LIST`` because a resync has to learn which folders came and went. It is not free:
    once a session has sent any LIST, every SELECT on Dovecot 2.3 (Maildir, with its
    default mailbox_list_index = yes) took about 70 ms at 100k messages here, against
    2.5 ms in a session without one.
    Login is excluded, as it is from our resync. Our resync also asks the server for
    flag changes (``CHANGEDSINCE``) and writes the database: that is its ratio.
    """
    imap = box.imap()
    try:
        imap._simple_command("ENABLE", "CONDSTORE")
        parser = BytesHeaderParser(policy=compat32)
        started = time.perf_counter()
        imap.list('""', "*")
        imap.select(FOLDER, readonly=True)
        _typ, data = imap.uid("SEARCH", f"UID {first_uid}:*")
        # "n:*" always matches the last message (RFC 3501 §6.4.8), even below n
        uids = [uid for uid in map(int, (data[0] or b"").split()) if uid >= first_uid]
        messages = 0
        for low in range(0, len(uids), FETCH_BATCH):
            batch = uids[low : low + FETCH_BATCH]
            _typ, fetched = imap.uid(
                "FETCH", f"{batch[0]}:{batch[-1]}", fetch_items(condstore=True)
            )
            for item in fetched:
                if isinstance(item, tuple):
                    parser.parsebytes(item[1])
                    messages += 1
        seconds = time.perf_counter() - started
        imap.close()
    finally:
        imap.logout()
    return seconds, messages


def add_resync_floor(bench: Bench, step: str, floors: list[float], count: int) -> None:
    """One row for a resync's floor, measured just before each store's resync."""
    bench.add(
        Figure(
            label(step),
            statistics.median(floors),
            note=rounds_note(floors),
            step=step,
            messages=count,
        )
    )


def uidnext_of(box: Mailbox) -> int:
    imap = box.imap()
    try:
        imap.select(FOLDER, readonly=True)
        return _uidnext(imap)
    finally:
        imap.logout()


def _uidnext(imap: imaplib.IMAP4) -> int:
    _typ, data = imap.response("UIDNEXT")  # from SELECT's "* OK [UIDNEXT n]"
    if data and data[0]:
        return int(data[0])
    _typ, data = imap.status(FOLDER, "(UIDNEXT)")
    match = re.search(rb"UIDNEXT (\d+)", data[0] if data and data[0] else b"")
    if match is None:
        raise RuntimeError(f"the server did not say the UIDNEXT of {FOLDER}")
    return int(match.group(1))


# =================================================================== stores and the sync child


@contextmanager
def bench_store(bench: Bench, kind: str) -> Iterator[Store]:
    """A new, migrated store: a SQLite file in the work dir, or a PostgreSQL schema.

    Removed afterwards (file, or ``DROP SCHEMA … CASCADE``), also on errors and Ctrl-C.
    """
    if kind == "sqlite":
        path = bench.workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        store = open_store(f"sqlite:///{path}")
        try:
            yield store
        finally:
            store.close()
            for leftover in bench.workdir.glob(f"{path.name}*"):
                leftover.unlink(missing_ok=True)
        return
    schema = f"mh_bench_{uuid.uuid4().hex[:8]}"
    try:
        store = open_store(bench.postgres_url, schema=schema)
        try:
            if not bench.postgres_version:
                bench.postgres_version = _postgres_version(store)
            yield store
        finally:
            store.close()
    finally:
        _drop_schema(bench.postgres_url, schema)


def _postgres_version(store: Store) -> str:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())


def _drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from mailhygiene.store.session import normalise_url

    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class ChildSync:
    seconds: float
    new: int
    process_mb: float
    helpers: int  # child processes seen: indexing workers, multiprocessing's tracker
    largest_helper_mb: float
    total_mb: float


class TreeRss:
    """Samples the memory of a process and all its descendants (the sync's workers).

    Peaks come from ``VmHWM`` in /proc/PID/status, the high-water mark of the process's
    own address space. Not ``ru_maxrss``: Linux carries it across ``execve`` from the
    forked copy of the parent, so a child started by a large process reports at least
    the parent's size. The tree's total is the sum of ``VmRSS`` at one moment, every
    ``RSS_SAMPLE_S``: a spike between two samples can be missed, and pages shared
    between the processes (the interpreter's libraries) count once per process.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.total_kb = 0
        self.peak_kb: dict[int, int] = {}  # pid → VmHWM last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(RSS_SAMPLE_S):
                return

    def sample(self) -> None:
        total = 0
        for pid in self._tree():
            status = proc_status_kb(pid)
            total += status.get("VmRSS", 0)
            if "VmHWM" in status:
                self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), status["VmHWM"])
        self.total_kb = max(self.total_kb, total)

    def _tree(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo.extend(int(child) for child in children.read_text().split())
                except (OSError, ValueError):
                    continue  # ended between the listing and the read
        return found


def proc_status_kb(pid: int | str) -> dict[str, int]:
    """The ``Vm…: N kB`` lines of /proc/PID/status ({} once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return {}
    return {key: int(value) for key, value in re.findall(r"^(Vm\w+):\s+(\d+) kB", text, re.M)}


def sync_in_child(bench: Bench, store: Store, box: Mailbox) -> ChildSync:
    """Run an initial sync of ``box`` into ``store`` in a child process (fresh interpreter).

    The child times ``sync_account`` alone (imports and login excluded) and reports its
    own peak RSS; here the whole process tree, workers included, is sampled.
    """
    spec = {
        "url": store.url,
        "schema": store.schema,
        "port": box.port,
        "user": box.user,
        "password": box.password,
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--sync-child"]
    with (
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as child,
        TreeRss(child.pid) as sampler,
    ):
        out, err = child.communicate(json.dumps(spec))
    if child.returncode != 0:
        raise RuntimeError(f"the sync child failed (exit {child.returncode}):\n{err[-4000:]}")
    data = json.loads(out.strip().splitlines()[-1])
    own_kb = max(int(data["process_kb"]), sampler.peak_kb.get(child.pid, 0))
    others = [kb for pid, kb in sampler.peak_kb.items() if pid != child.pid]
    return ChildSync(
        seconds=float(data["seconds"]),
        new=int(data["new"]),
        process_mb=own_kb / 1024,
        helpers=len(others),
        largest_helper_mb=max(others, default=0) / 1024,
        total_mb=max(sampler.total_kb, own_kb) / 1024,
    )


def rss_note(child: ChildSync) -> str:
    if not child.helpers:
        return "no workers (below their threshold)"
    return (
        f"{child.helpers} child processes (workers, multiprocessing's tracker), "
        f"largest {child.largest_helper_mb:.0f} MB"
    )


def run_sync_child() -> int:
    """The child side of ``sync_in_child``: the spec comes on stdin, JSON goes to stdout."""
    spec = json.loads(sys.stdin.read())
    box = Mailbox(int(spec["port"]), str(spec["user"]), str(spec["password"]))
    store = open_store(spec["url"], schema=spec["schema"], migrate=False)
    try:
        with ImapMailServer(box.account, box.password) as server:
            seconds, result = timed(lambda: sync_account(store, server, box.request, now=NOW))
    finally:
        store.close()
    payload = {
        "seconds": seconds,
        "new": result.new,
        "process_kb": proc_status_kb("self").get("VmHWM", 0),
    }
    print(json.dumps(payload))
    return 0


# =================================================================== the index figures


def measure_initial_syncs(
    bench: Bench, count: int, box: Mailbox, stack: ExitStack
) -> tuple[list[FloorTiming], dict[str, list[ChildSync]], dict[str, Store]]:
    """The floor and an initial sync into a new store of each kind, ``bench.repeat`` rounds.

    Rounds alternate (floor, then each store), so that a machine that slows down or
    speeds up during the run moves both sides of the ratio alike; on two cores one
    measurement varies by about ±10 %. The last round's stores stay open on ``stack`` for
    the figures measured after a sync; the earlier ones are removed at once.
    """
    floors: list[FloorTiming] = []
    syncs: dict[str, list[ChildSync]] = {kind: [] for kind in bench.kinds}
    stores: dict[str, Store] = {}
    for round_number in range(1, bench.repeat + 1):
        of = f" ({round_number}/{bench.repeat})" if bench.repeat > 1 else ""
        with bench.progress.running(f"floor fetch{of}"):
            floor = raw_fetch(box, parse=True)
        if floor.messages != count:
            raise RuntimeError(f"the floor fetched {floor.messages:,} messages, not {count:,}")
        floors.append(floor)
        for kind in bench.kinds:
            with ExitStack() as this_round:
                store = this_round.enter_context(bench_store(bench, kind))
                with bench.progress.running(f"initial sync [{kind}]{of}"):
                    syncs[kind].append(sync_in_child(bench, store, box))
                if round_number == bench.repeat:
                    stack.enter_context(this_round.pop_all())
                    stores[kind] = store
    return floors, syncs, stores


def notes(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def rounds_note(values: Sequence[float]) -> str:
    """How the figure came about when it is a median: every round's value."""
    if len(values) < 2:
        return ""
    return f"median of {len(values)}: " + ", ".join(f"{value:.2f}" for value in values) + " s"


def measure_index(bench: Bench, count: int, box: Mailbox) -> None:
    with bench.progress.running("first (cold) fetch"):
        cold = raw_fetch(box, parse=False)
    bench.progress.line(
        f"first fetch after writing the mail: {cold.fetch:.2f} s (Dovecot builds its index "
        "and cache; untimed warm-up)"
    )
    per_100k = count / 100_000
    with ExitStack() as stack:
        floors, syncs, stores = measure_initial_syncs(bench, count, box, stack)
        floor = statistics.median(f.fetch + f.parse for f in floors)
        bench.add(
            Figure(
                label("floor.fetch"),
                statistics.median(f.fetch for f in floors),
                note=notes(
                    f"cold first pass {cold.fetch:.2f} s", rounds_note([f.fetch for f in floors])
                ),
                step="floor.fetch",
                messages=count,
            )
        )
        bench.add(
            Figure(
                label("floor.parse"),
                floor,
                note=rounds_note([f.fetch + f.parse for f in floors]),
                step="floor.parse",
                messages=count,
            )
        )
        for kind, children in syncs.items():
            seconds = statistics.median(child.seconds for child in children)
            missing = [child.new for child in children if child.new != count]
            bench.add(
                Figure(
                    label("sync.initial", kind),
                    seconds,
                    floor,
                    "≤ 1.5× floor",
                    seconds <= 1.5 * floor,
                    note=notes(
                        rounds_note([child.seconds for child in children]),
                        f"{missing[0]:,} indexed, not {count:,}!" if missing else "",
                    ),
                    step="sync.initial",
                    kind=kind,
                    messages=count,
                )
            )
            largest = max(children, key=lambda child: child.total_mb)
            bench.add(
                Figure(
                    label("rss", kind),
                    largest.total_mb,
                    goal=f"≤ {RSS_GOAL_MB:.0f} MB",
                    ok=largest.total_mb <= RSS_GOAL_MB,
                    note=rss_note(largest),
                    step="rss",
                    kind=kind,
                    unit="MB",
                    messages=count,
                )
            )
            bench.add(
                Figure(
                    label("rss.process", kind),
                    max(child.process_mb for child in children),
                    step="rss.process",
                    kind=kind,
                    unit="MB",
                    messages=count,
                )
            )
        nochange: list[tuple[str, float, float, int]] = []
        for kind, store in stores.items():
            with bench.progress.running(f"no-change resync [{kind}]"):
                floor_s, _ = raw_resync(box, uidnext_of(box))
                seconds, result = resync(store, box)
            nochange.append((kind, floor_s, seconds, result))
        add_resync_floor(bench, "floor.nochange", [floor_s for _, floor_s, _, _ in nochange], count)
        for kind, floor_s, seconds, result in nochange:
            bench.add(
                Figure(
                    label("sync.nochange", kind),
                    seconds,
                    floor_s,
                    f"≤ {0.3 * per_100k:.3g} s",
                    seconds <= 0.3 * per_100k,
                    note="" if result == 0 else f"{result:,} new?!",
                    step="sync.nochange",
                    kind=kind,
                    messages=count,
                )
            )
        extra = max(1, count // 100)
        first_new = uidnext_of(box)
        # Written without dropping Dovecot's index, as a delivery would: Dovecot notices
        # the new files itself, and the resync does not pay for a cold rescan.
        bench.generate(box, extra, seed=SEED + 100, age_days=(0, 2), rescan=False)
        # why: the first reader of the new files pays Dovecot's opening and caching of
        # each (at 300k, 0.65 s of a 1.38 s resync): whichever store went first looked
        # slower. Read once here so that every store's resync is timed alike, as the
        # initial sync is after the untimed cold fetch.
        with bench.progress.running("first (cold) fetch of the new mail"):
            cold_new = first_fetch_from(box, first_new)
        bench.progress.line(
            f"first fetch of the new mail: {cold_new:.2f} s (Dovecot opens and caches the "
            "new files; untimed warm-up)"
        )
        plus1: list[tuple[str, float, float, int, int]] = []
        for kind, store in stores.items():
            with bench.progress.running(f"resync after +1% [{kind}]"):
                floor_s, floor_new = raw_resync(box, first_new)
                seconds, result = resync(store, box)
            plus1.append((kind, floor_s, seconds, result, floor_new))
        add_resync_floor(bench, "floor.plus1", [floor_s for _, floor_s, *_ in plus1], count)
        for kind, floor_s, seconds, result, floor_new in plus1:
            wrong = result != extra or floor_new != extra
            bench.add(
                Figure(
                    label("sync.plus1", kind),
                    seconds,
                    floor_s,
                    note=f"{result:,} new" + (f", not {extra:,}!" if wrong else ""),
                    step="sync.plus1",
                    kind=kind,
                    messages=count,
                )
            )
        for kind, store in stores.items():
            measure_after_sync(bench, store, box.account.name, kind, count)


def resync(store: Store, box: Mailbox) -> tuple[float, int]:
    with ImapMailServer(box.account, box.password) as server:
        seconds, result = timed(lambda: sync_account(store, server, box.request, now=NOW))
    return seconds, result.new


def measure_after_sync(bench: Bench, store: Store, account: str, kind: str, count: int) -> None:
    """Threading/case linking, the retention verdicts and ``purge plan`` on the indexed mailbox."""
    from mailhygiene.cases.service import link_after_sync
    from mailhygiene.config.rules import load_rules
    from mailhygiene.purge.plan import plan_purge

    policy = load_rules(ROOT / "rules.toml")
    per_100k = count / 100_000
    with bench.progress.running(f"linking [{kind}]"):
        seconds, linked = timed(lambda: link_after_sync(store, policy, account, NOW, "bench"))
    bench.add(
        Figure(
            label("link", kind),
            seconds,
            note=f"{linked:,} links",
            step="link",
            kind=kind,
            messages=count,
        )
    )
    with bench.progress.running(f"retention verdicts [{kind}]"):
        seconds, judged = timed(lambda: refresh_verdicts_of(store, policy, account))
    bench.add(
        Figure(
            label("verdicts", kind),
            seconds,
            note=f"{judged:,} judged",
            step="verdicts",
            kind=kind,
            messages=count,
        )
    )
    runs: list[float] = []
    for run in range(1, PLAN_RUNS + 1):
        with bench.progress.running(f"purge plan [{kind}], {run} of {PLAN_RUNS}"):
            seconds, summary = timed(
                lambda: plan_purge(store, policy, account=account, now=NOW, actor="bench")
            )
        runs.append(seconds)
    seconds = statistics.median(runs)
    planned = summary.item_count
    bench.add(
        Figure(
            label("plan", kind),
            seconds,
            None,
            f"≤ {1.0 * per_100k:.3g} s",
            seconds <= 1.0 * per_100k,
            note=notes(f"{planned:,} planned", rounds_note(runs)),
            step="plan",
            kind=kind,
            messages=count,
        )
    )


def refresh_verdicts_of(store: Store, policy: Policy, account: str) -> int:
    """What the first plan after a sync does before planning: judge the new mail."""
    from mailhygiene.retention import refresh_verdicts

    with store.transaction() as session:
        return refresh_verdicts(
            session,
            policy,
            account=account,
            exclude_folders=(policy.quarantine_folder,),
            store=store,
        )


# =================================================================== the move figures


def cutoff_date() -> str:
    """The IMAP SEARCH date (RFC 3501 §6.4.4, ``BEFORE``) of the retention cutoff."""
    return (NOW - timedelta(days=KEEP_DAYS)).strftime("%d-%b-%Y")


def raw_move(box: Mailbox) -> tuple[float, float, int]:
    """Raw UID SEARCH BEFORE + UID MOVE (chunked ranges); returns (search s, move s, moved).

    The search asks for an ESEARCH answer (RFC 4731 ``RETURN (ALL)``: a compact UID set)
    when the server offers it: a plain SEARCH line for ~700k UIDs would be longer than
    the 1 MB imaplib accepts.
    """
    from mailhygiene.imap.wire import chunked_uid_sets, parse_uid_set

    imap = box.imap()
    try:
        imap.create(MOVE_TARGET)
        imap.select(FOLDER)
        esearch = "ESEARCH" in imap.capabilities
        started = time.perf_counter()
        if esearch:
            imap.uid("SEARCH", "RETURN", "(ALL)", "BEFORE", cutoff_date())
            _typ, data = imap.response("ESEARCH")
            found = re.search(rb"\bALL ([\d:,]+)", b" ".join(d for d in data if d))
            uids = parse_uid_set(found.group(1).decode("ascii")) if found else []
        else:
            _typ, data = imap.uid("SEARCH", "BEFORE", cutoff_date())
            uids = [int(x) for x in data[0].split()]
        searched = time.perf_counter()
        for _batch, text in chunked_uid_sets(uids, max_uids=MOVE_BATCH):
            imap.uid("MOVE", text, MOVE_TARGET)
        moved = time.perf_counter()
    finally:
        imap.logout()
    return searched - started, moved - searched, len(uids)


def our_move(bench: Bench, box: Mailbox) -> tuple[float, int]:
    """Index, plan (default 365 d, no rules), approve, and time the execution only."""
    from mailhygiene.policy import Duration
    from mailhygiene.purge.approve import approve_plan
    from mailhygiene.purge.execute import execute_plan
    from mailhygiene.purge.plan import plan_purge

    policy = Policy(
        default_keep=Duration.parse(f"{KEEP_DAYS}d"),
        quarantine_folder=MOVE_TARGET,
        auto_approve_limit=10**9,
        source_hash="bench",
    )
    with (
        bench_store(bench, "sqlite") as store,
        ImapMailServer(box.account, box.password) as server,
    ):
        with bench.progress.running("index + plan for our move (untimed)"):
            sync_account(store, server, box.request, now=NOW)
            summary = plan_purge(store, policy, account=box.account.name, now=NOW, actor="planner")
        ref = summary.ref
        assert ref is not None
        approve_plan(store, ref, policy, actor="manager", now=NOW)
        with bench.progress.running("purge execute"):
            seconds, report = timed(
                lambda: execute_plan(store, server, policy, ref, actor="manager", now=NOW)
            )
    return seconds, report.done


def imapfilter_move(bench: Bench, box: Mailbox) -> tuple[float, int] | None:
    binary = shutil.which("imapfilter")
    if binary is None:
        return None
    config = bench.workdir / "imapfilter.lua"
    config.write_text(
        "options.timeout = 3600\noptions.create = true\n"
        f"acct = IMAP {{ server = '127.0.0.1', port = {box.port}, username = '{box.user}', "
        f"password = '{box.password}' }}\n"
        # arrived_before, not is_older: the floor's SEARCH BEFORE date (our NOW is fixed,
        # imapfilter's would be today)
        f"results = acct['{FOLDER}']:arrived_before('{cutoff_date()}')\n"
        f"results:move_messages(acct['{MOVE_TARGET}'])\n"
    )
    try:
        with bench.progress.running("imapfilter move"):
            started = time.perf_counter()
            done = subprocess.run(
                [binary, "-c", str(config)],
                check=False,
                capture_output=True,
                text=True,
                env={**os.environ, "HOME": str(bench.workdir)},
            )
            seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"imapfilter failed (exit {done.returncode}):\n{done.stderr}")
    finally:
        config.unlink(missing_ok=True)
    imap = box.imap()
    try:
        _typ, data = imap.status(MOVE_TARGET, "(MESSAGES)")
    finally:
        imap.logout()
    match = re.search(rb"MESSAGES (\d+)", data[0] if data and data[0] else b"")
    return seconds, int(match.group(1)) if match else 0


@dataclass(frozen=True)
class MoveRound:
    """One round of the three moves, each on its own new mailbox."""

    search_s: float
    floor: float
    raw_moved: int
    ours_s: float
    ours_moved: int
    peer: tuple[float, int] | None


def move_round(bench: Bench, count: int, round_number: int) -> MoveRound:
    """Generate the floor's, our and imapfilter's mailboxes, move in each, delete them."""
    boxes = new_mailboxes(bench, count, ("raw", "ours", "filter"), round_number)
    try:
        # Our execution runs after a sync has fetched every message once; give the
        # floor's and imapfilter's mailboxes the same warm Dovecot cache first.
        for name in ("raw", "filter"):
            with bench.progress.running(f"warming {boxes[name].user}"):
                raw_fetch(boxes[name], parse=False)
        with bench.progress.running("raw UID SEARCH + UID MOVE"):
            search_s, move_s, raw_moved = raw_move(boxes["raw"])
        ours_s, ours_moved = our_move(bench, boxes["ours"])
        peer = imapfilter_move(bench, boxes["filter"])
    finally:
        remove_mailboxes(bench, boxes)
    return MoveRound(search_s, search_s + move_s, raw_moved, ours_s, ours_moved, peer)


def measure_moves(bench: Bench, count: int) -> None:
    """The three moves, ``bench.repeat`` rounds (each on new mailboxes); medians count."""
    rounds = [move_round(bench, count, n) for n in range(1, bench.repeat + 1)]
    floor = statistics.median(r.floor for r in rounds)
    bench.add(
        Figure(
            label("move.floor"),
            floor,
            note=notes(
                f"{rounds[-1].raw_moved:,} moved, search "
                f"{statistics.median(r.search_s for r in rounds):.2f} s",
                rounds_note([r.floor for r in rounds]),
            ),
            step="move.floor",
            messages=count,
        )
    )
    ours_s = statistics.median(r.ours_s for r in rounds)
    bench.add(
        Figure(
            label("move.ours"),
            ours_s,
            floor,
            "≤ 1.2× floor",
            ours_s <= 1.2 * floor,
            note=notes(f"{rounds[-1].ours_moved:,} moved", rounds_note([r.ours_s for r in rounds])),
            step="move.ours",
            messages=count,
        )
    )
    peers = [r.peer for r in rounds if r.peer is not None]
    if not peers:
        bench.progress.line("imapfilter is not installed: no peer figure")
        return
    bench.add(
        Figure(
            label("move.imapfilter"),
            statistics.median(seconds for seconds, _moved in peers),
            floor,
            note=notes(f"{peers[-1][1]:,} moved", rounds_note([seconds for seconds, _ in peers])),
            step="move.imapfilter",
            messages=count,
        )
    )


def new_mailboxes(
    bench: Bench, count: int, names: Sequence[str], round_number: int = 1
) -> dict[str, Mailbox]:
    """A new user per name with ``count`` generated messages, written to disk."""
    boxes: dict[str, Mailbox] = {}
    try:
        for name in names:
            user = f"{name}-{count}-{round_number}@bench.example"
            boxes[name] = Mailbox(bench.dovecot.port, user, bench.dovecot.add_user(user))
            bench.generate(boxes[name], count)
        # why: the generated mail (~5 KB a message and user) is still being written back
        # to disk by the kernel; every figure would share the disk with that writeback
        with bench.progress.running("writing the generated mail to disk (untimed)"):
            os.sync()
    except BaseException:
        remove_mailboxes(bench, boxes)
        raise
    return boxes


def remove_mailboxes(bench: Bench, boxes: dict[str, Mailbox]) -> None:
    for box in boxes.values():
        bench.dovecot.remove_user(box.user)


def run_size(bench: Bench, count: int) -> None:
    """Every figure at one mailbox size; its mailboxes are deleted afterwards."""
    bench.progress.size = count
    boxes = new_mailboxes(bench, count, ("index",))
    try:
        measure_index(bench, count, boxes["index"])
    finally:
        remove_mailboxes(bench, boxes)
    if not bench.skip_move:
        measure_moves(bench, count)


# =================================================================== the machine


def describe_machine() -> dict[str, str]:
    """CPU, RAM, kernel and library versions, read where they are kept (not guessed)."""
    cpuinfo = _read("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    logical = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or os.cpu_count() or 0
    cores = {
        (block.get("physical id"), block.get("core id"))
        for block in _cpuinfo_blocks(cpuinfo)
        if "core id" in block
    }
    cpu = models[0].strip() if models else platform.processor() or platform.machine()
    counted = f"{logical} logical CPUs" + (f", {len(cores)} physical cores" if cores else "")
    usable = len(os.sched_getaffinity(0))
    if usable != logical:
        counted += f", {usable} usable by this process"
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "CPU": f"{cpu} — {counted}",
        "RAM": f"{int(mem.group(1)) / 2**20:.1f} GiB" if mem else "unknown",
        "Kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Load average at start": f"{load} (1, 5, 15 min)",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite": sqlite3.sqlite_version,
        "Dovecot": _version_of([dovecot_binary("dovecot") or "dovecot", "--version"]),
        "imapfilter": _version_of(["imapfilter", "-V"], r"IMAPFilter\s+(\S+)"),
        "mailhygiene": f"{__version__}{_git_revision()}",
        "Date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }


def cpu_ticks() -> tuple[int, int]:
    """CPU time since boot and the part of it stolen by the hypervisor for other guests,
    in ticks (``/proc/stat``; (0, 0) where there is none)."""
    fields = _read("/proc/stat").partition("\n")[0].split()
    if not fields or fields[0] != "cpu":
        return 0, 0
    ticks = [int(value) for value in fields[1:9]]  # user … softirq, steal
    return sum(ticks), ticks[7] if len(ticks) == 8 else 0


def steal_text(start: tuple[int, int], end: tuple[int, int]) -> str | None:
    """The share of CPU time between two ``cpu_ticks`` that other guests took."""
    total = end[0] - start[0]
    if total <= 0:
        return None
    return (
        f"{(end[1] - start[1]) / total:.1%} of CPU time went to other guests of the "
        "hypervisor (figures vary with it)"
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in text.split("\n\n"):
        pairs = (line.split(":", 1) for line in chunk.splitlines() if ":" in line)
        blocks.append({key.strip(): value.strip() for key, value in pairs})
    return blocks


def _version_of(command: Sequence[str], pattern: str = r"(\S+)") -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def _git_revision() -> str:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return ""
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f", commit {commit}" + (" with uncommitted changes" if dirty else "")


def command_line(argv: Sequence[str]) -> str:
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else "python3"
    return shlex.join([shown, "scripts/bench.py", *argv])


# =================================================================== the report


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


def series(figures: list[Figure]) -> dict[tuple[str, str], dict[int, float]]:
    """``(step, kind) → {messages: value}`` in report order."""
    order = {step: n for n, (step, _label) in enumerate(STEPS)}
    kinds = {"": 0, "sqlite": 1, "postgresql": 2}
    found: dict[tuple[str, str], dict[int, float]] = {}
    for f in sorted(figures, key=lambda f: (order.get(f.step, len(order)), kinds.get(f.kind))):
        found.setdefault((f.step, f.kind), {})[f.messages] = f.seconds
    return found


def scaling_table(figures: list[Figure], sizes: Sequence[int]) -> str:
    timed_series = {k: v for k, v in series(figures).items() if not k[0].startswith("rss")}
    head = [f"{n:,} (s)" for n in sizes] + [f"{n:,} (µs/msg)" for n in sizes]
    lines = [
        "| step | " + " | ".join(head) + " |",
        "| --- |" + " ---: |" * len(head),
    ]
    for (step, kind), values in timed_series.items():
        seconds = [f"{values[n]:.2f}" if n in values else "" for n in sizes]
        micros = [f"{values[n] / n * 1e6:,.1f}" if n in values else "" for n in sizes]
        lines.append(f"| {label(step, kind)} | " + " | ".join(seconds + micros) + " |")
    rss = {k: v for k, v in series(figures).items() if k[0].startswith("rss")}
    if rss:
        lines += ["", "| memory | " + " | ".join(f"{n:,}" for n in sizes) + " |"]
        lines.append("| --- |" + " ---: |" * len(sizes))
        for (step, kind), values in rss.items():
            cells = [f"{values[n]:.0f}" if n in values else "" for n in sizes]
            lines.append(f"| {label(step, kind)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flatness(figures: list[Figure]) -> list[tuple[str, str, str, bool]]:
    """Per RSS series: does the peak stay flat from the smallest to the largest size?

    Compared over the sizes where the sync takes the same path: the indexing workers
    start at ``PARALLEL_THRESHOLD`` new messages, a step up that is not growth.
    Returns (sizes compared, what, measured, flat) rows.
    """
    verdicts = []
    for (step, kind), values in series(figures).items():
        parallel = [n for n in values if n >= PARALLEL_THRESHOLD]
        sizes = parallel if len(parallel) >= 2 else list(values)
        if not step.startswith("rss") or len(sizes) < 2:
            continue
        small, large = min(sizes), max(sizes)
        growth = values[large] / values[small] - 1
        verdicts.append(
            (
                f"{small:,} → {large:,}",
                f"{label(step, kind)}: flat",
                f"{values[small]:.0f} → {values[large]:.0f} MB ({growth:+.0%})",
                growth <= RSS_FLAT_GROWTH,
            )
        )
    return verdicts


def goals_table(figures: list[Figure]) -> str:
    lines = [
        "| messages | figure | measured | goal | met |",
        "| ---: | --- | ---: | --- | --- |",
    ]
    rows = [
        (
            f"{f.messages:,}",
            f.name,
            f.value_text() + (f" ({f.ratio:.2f}×)" if f.ratio else ""),
            f.goal,
            f.ok,
        )
        for f in figures
        if f.ok is not None
    ]
    growth = f"≤ {RSS_FLAT_GROWTH:+.0%} growth"
    rows += [(sizes, what, measured, growth, ok) for sizes, what, measured, ok in flatness(figures)]
    for messages, name, measured, goal, ok in rows:
        met = "met" if ok else "**not met**"
        lines.append(f"| {messages} | {name} | {measured} | {goal} | {met} |")
    return "\n".join(lines)


def render_report(
    figures: list[Figure],
    sizes: Sequence[int],
    machine: dict[str, str],
    command: str,
    plot_link: str | None,
) -> str:
    parts = [
        "# mailhygiene benchmark",
        "",
        "Every ratio is to the raw IMAP floor measured in the same run at the same mailbox "
        "size; µs/msg divides by the number of messages in the mailbox (also for the moves, "
        "which move about two thirds of them). The goals are those of issue #9; the per-100k "
        "goals are scaled linearly, so at small sizes fixed costs (login, SELECT) dominate.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "## How to reproduce",
        "",
        "From the repository root, as root (Dovecot drops to its own user), with "
        "`dovecot-imapd` and `imapfilter` installed:",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Goals",
        "",
        goals_table(figures),
        "",
        "## Scaling",
        "",
    ]
    if plot_link:
        parts += [f"![seconds and peak RSS vs mailbox size]({plot_link})", ""]
    parts += [scaling_table(figures, sizes), "", "## Results per size"]
    for count in sizes:
        here = [f for f in figures if f.messages == count]
        parts += ["", render(here, f"### {count:,} messages")]
    return "\n".join(parts) + "\n"


def short_size(count: float) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1000)):
        if count >= scale:
            return f"{count / scale:g}{unit}"
    return f"{count:g}"


def write_plot(path: Path, figures: list[Figure], sizes: Sequence[int], title: str) -> None:
    """Seconds vs size per step (log-log) and peak RSS vs size, as a PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax_time, ax_rss) = plt.subplots(
        1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [3, 2]}, layout="constrained"
    )
    colours = [f"C{n}" for n in range(10)]
    data = series(figures)
    for index, step in enumerate(PLOTTED):
        for kind in ("", "sqlite", "postgresql"):
            values = data.get((step, kind))
            if not values:
                continue
            xs = sorted(values)
            ax_time.plot(
                xs,
                [max(values[x], 1e-4) for x in xs],
                marker="o",
                color=colours[index % len(colours)],
                linestyle="--" if kind == "postgresql" else "-",
                label=label(step, kind),
            )
    reference = data.get(("floor.parse", ""))
    if reference and len(sizes) > 1:
        x0 = min(reference)
        ends = [min(sizes), max(sizes)]
        ax_time.plot(
            ends,
            [reference[x0] * x / x0 for x in ends],
            color="grey",
            linestyle=":",
            linewidth=1,
            label="∝ messages (linear scaling)",
        )
    ax_time.set_xscale("log")
    ax_time.set_yscale("log")
    ax_time.set_xlabel("messages in the mailbox")
    ax_time.set_ylabel("seconds")
    ax_time.set_title("Time per step vs mailbox size (log-log)")
    ax_time.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3)

    peak = 0.0
    for colour, kind in (("C0", "sqlite"), ("C1", "postgresql")):
        for step, style, what in (
            ("rss", "-", "process + workers"),
            ("rss.process", ":", "process"),
        ):
            values = data.get((step, kind))
            if not values:
                continue
            xs = sorted(values)
            peak = max(peak, *values.values())
            ax_rss.plot(
                xs,
                [values[x] for x in xs],
                marker="o" if step == "rss" else "s",
                color=colour,
                linestyle=style,
                label=f"{kind}: {what}",
            )
    ax_rss.axhline(
        RSS_GOAL_MB,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"goal ≤ {RSS_GOAL_MB:.0f} MB",
    )
    ax_rss.set_xscale("log")
    ax_rss.set_ylim(0, max(RSS_GOAL_MB, peak) * 1.15)
    ax_rss.set_xlabel("messages in the mailbox")
    ax_rss.set_ylabel("peak RSS (MB)")
    ax_rss.set_title("Peak RSS of a full sync vs mailbox size")
    ax_rss.grid(True, which="both", alpha=0.3)
    ax_rss.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2)

    for ax in (ax_time, ax_rss):
        ax.set_xticks(list(sizes))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: short_size(x)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(sizes) / 1.4, max(sizes) * 1.4)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# =================================================================== command line


def parse_size(text: str) -> int:
    """``100000``, ``100_000``, ``100k``, ``1M``, ``2.5k``."""
    raw = text.strip().lower().replace("_", "")
    scale = {"k": 1000, "m": 1_000_000}.get(raw[-1:], 1)
    try:
        value = round(float(raw[:-1] if scale > 1 else raw) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a message count (e.g. 10000, 30k, 1M)"
        ) from None
    if value < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a mailbox needs at least 100 messages")
    return value


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({parse_size(part) for part in text.split(",") if part.strip()})
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size, e.g. 10000,30000,100000")
    return sizes


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Progress lines go to stderr; the report (or --json) to stdout.",
    )
    parser.add_argument(
        "--messages", type=parse_size, help="one mailbox size (default 100000; 100k, 1M work)"
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        help="comma-separated mailbox sizes to measure one after the other, e.g. 10k,30k,100k",
    )
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument(
        "--postgres-url", default=POSTGRES_URL, help=f"with --postgres (default {POSTGRES_URL})"
    )
    parser.add_argument("--skip-move", action="store_true", help="skip the move benchmarks")
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="measure the floor, each initial sync and the moves this many times, in "
        "alternating rounds; the medians count (default 3)",
    )
    parser.add_argument("--markdown", type=Path, help="write the full report to this file")
    parser.add_argument(
        "--plot", type=Path, help=f"draw time and RSS vs size to this PNG ({BENCH_EXTRA_HINT})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the report")
    parser.add_argument("--sync-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes and args.messages:
        parser.error("give --sizes or --messages, not both")
    args.sizes = args.sizes or [args.messages or 100_000]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.sync_child:
        return run_sync_child()
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        # Checked before hours of measuring, not after.
        print(f"bench.py: --plot needs matplotlib: {BENCH_EXTRA_HINT}", file=sys.stderr)
        return 2
    sizes: list[int] = args.sizes
    kinds = ("sqlite", "postgresql") if args.postgres else ("sqlite",)
    machine = describe_machine()
    progress = Progress()
    progress.line(
        f"sizes {', '.join(f'{n:,}' for n in sizes)}; databases {', '.join(kinds)}; "
        f"moves {'skipped' if args.skip_move else 'measured'}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="mh-bench-"))
    ticks_at_start = cpu_ticks()
    try:
        with ThrowawayDovecot() as dovecot:
            bench = Bench(
                dovecot, workdir, progress, kinds, args.postgres_url, args.skip_move, args.repeat
            )
            for count in sizes:
                run_size(bench, count)
            progress.size = 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if bench.postgres_version:
        machine = {**machine, "PostgreSQL": bench.postgres_version}
    steal = steal_text(ticks_at_start, cpu_ticks())
    if steal:
        machine["CPU steal during the run"] = steal
    machine["Date"] = machine.pop("Date")
    figures = bench.figures
    plot_link = None
    if args.plot:
        title = f"mailhygiene benchmark — {machine['CPU']} — {machine['Date']}"
        write_plot(args.plot, figures, sizes, title)
        progress.line(f"wrote {args.plot}")
        base = args.markdown.resolve().parent if args.markdown else Path.cwd()
        plot_link = os.path.relpath(args.plot.resolve(), base)
    report = render_report(figures, sizes, machine, command_line(argv), plot_link)
    if args.json:
        print(json.dumps([{**asdict(f), "ratio": f.ratio} for f in figures], indent=2))
    else:
        print(report, end="")
    if args.markdown:
        args.markdown.write_text(report, encoding="utf-8")
        progress.line(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
