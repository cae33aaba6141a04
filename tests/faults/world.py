"""A small, fully known mailbox + index + policy, and the safety checks run after a fault.

Every planted message carries an ``X-Fault-Key`` header, so the checks identify it on
the server without trusting anything mailhygiene computed (Message-ID, index rows, the
journal). ``check_purge`` compares the server before and after a purge and reports,
per message, what the safety invariants of DESIGN.md forbid:

* **wrongly removed** — a message that was not planned, or is protected (case, hold,
  case keyword), is no longer exactly once in its folder under its UID;
* **unaccounted** — a planned message that is neither ``done`` and exactly once in the
  quarantine (with a ledger entry) nor ``skipped`` with a reason and still in its folder;
* **duplicates** — a message present more than once anywhere on the server;
* the audit chain must verify and the index must list exactly the server's UIDs of
  every source folder.
"""

from __future__ import annotations

import imaplib
import itertools
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from mailhygiene.audit import log as audit
from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount, ThrowawayDovecot, imap_utf7_encode
from mailhygiene.devtools.mailbox import FolderWriter, message_bytes
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, SyncResult, sync_account
from mailhygiene.policy import Duration, Policy, PurgeAction
from mailhygiene.purge.approve import approve_plan
from mailhygiene.purge.execute import ExecutionReport, execute_plan
from mailhygiene.purge.model import ItemState
from mailhygiene.purge.plan import plan_purge
from mailhygiene.store import purge_queries
from mailhygiene.store.models import Account, Folder, Message, Plan, QuarantineEntry
from mailhygiene.store.session import Store, open_store

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
RECENT = NOW - timedelta(days=10)
ACCOUNT_NAME = "support"
PASSWORD_ENV = "MH_FAULT_PASSWORD"
QUARANTINE = "Quarantine"
KEY_HEADER = "X-Fault-Key"

_KEY_RE = re.compile(rb"X-Fault-Key:[ \t]*(\S+)", re.IGNORECASE)
_UID_RE = re.compile(rb"\bUID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_serial = itertools.count(1)

Location = tuple[str, int]  # (folder, uid)


def fault_policy(*, action: PurgeAction = PurgeAction.MOVE) -> Policy:
    """The policy of every fault world: 180 days, move to ``Quarantine``; built in code so a
    child process (``purge_runner``) builds exactly the same one."""
    return Policy(
        default_keep=Duration.parse("180d"),
        auto_approve_limit=100_000,
        purge_action=action,
        quarantine_folder=QUARANTINE,
        source_hash="faults-policy",
    )


def quote_folder(name: str) -> str:
    """A folder name for imaplib: modified UTF-7, quoted (RFC 3501 §5.1.3)."""
    encoded = imap_utf7_encode(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Planted:
    key: str
    folder: str
    message_id: str  # as the index stores it (lower-case, no <>); "" when it has none
    received: datetime


@dataclass
class FaultWorld:
    """One fresh Dovecot account, a fresh database and the fault policy."""

    dovecot: ThrowawayDovecot
    account: ImapAccount
    settings: AccountSettings
    store: Store
    db_url: str
    policy: Policy
    schema: str | None = None
    planted: dict[str, Planted] = field(default_factory=dict)
    _writers: dict[str, FolderWriter] = field(default_factory=dict)

    # -- building the mailbox ---------------------------------------------------------
    def plant(
        self,
        folder: str,
        key: str,
        received: datetime,
        *,
        subject: str | None = None,
        message_id: str | None = "",
        keywords: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> Planted:
        """Write one message straight into Maildir (call ``rescan`` when done).

        ``message_id=""`` (default) gives ``<KEY@faults.example>``; ``None`` omits the
        header; anything else is written as given (with <> added if missing).
        """
        if message_id == "":
            header_id = f"<{key}@faults.example>"
        elif message_id is None:
            header_id = None
        else:
            header_id = message_id if message_id.startswith("<") else f"<{message_id}>"
        raw = message_bytes(
            subject=subject or f"Fault test {key}",
            from_="kund@example.se",
            date=received,
            message_id=header_id or "<unused@x>",
            headers=[(KEY_HEADER, key), *extra_headers],
            omit_headers=("Message-ID",) if header_id is None else (),
        )
        writer = self._writers.get(folder)
        if writer is None:
            writer = self._writers[folder] = FolderWriter(
                self.dovecot, self.account.username, folder
            )
        writer.write(raw, received, keywords=keywords)
        stored_id = header_id.strip("<>").lower() if header_id else ""
        planted = Planted(key, folder, stored_id, received)
        self.planted[key] = planted
        return planted

    def append(
        self, folder: str, key: str, received: datetime, *, subject: str | None = None
    ) -> Planted:
        """APPEND one message over IMAP (safe while other sessions are open)."""
        raw = message_bytes(
            subject=subject or f"Fault test {key}",
            from_="kund@example.se",
            date=received,
            message_id=f"<{key}@faults.example>",
            headers=[(KEY_HEADER, key)],
        )
        conn = self.imap()
        try:
            conn.create(quote_folder(folder))
            typ, data = conn.append(
                quote_folder(folder), None, imaplib.Time2Internaldate(received), raw
            )
            assert typ == "OK", data
        finally:
            conn.logout()
        planted = Planted(key, folder, f"{key}@faults.example", received)
        self.planted[key] = planted
        return planted

    def rescan(self) -> None:
        self.dovecot.rescan(self.account.username)
        self._writers.clear()

    # -- talking to the server -------------------------------------------------------
    def imap(self) -> imaplib.IMAP4:
        """A plain imaplib connection as the account's owner (the "other client")."""
        conn = imaplib.IMAP4(self.account.host, self.account.port, timeout=30)
        conn.login(self.account.username, self.account.password)
        return conn

    def server(self, settings: AccountSettings | None = None) -> ImapMailServer:
        return ImapMailServer(settings or self.settings, self.account.password)

    def sync(self, *, server: ImapMailServer | None = None) -> SyncResult:
        request = SyncRequest(
            account=self.settings.name, host=self.settings.host, username=self.settings.username
        )
        if server is not None:
            return sync_account(self.store, server, request, now=NOW)
        with self.server() as connected:
            return sync_account(self.store, connected, request, now=NOW)

    def plan(self) -> str:
        summary = plan_purge(
            self.store, self.policy, account=self.settings.name, now=NOW, actor="planner"
        )
        assert summary.ref is not None, "nothing was planned"
        return summary.ref

    def approve(self, ref: str) -> None:
        approve_plan(self.store, ref, self.policy, actor="manager", now=NOW)

    def execute(
        self, ref: str, *, batch_size: int = 7, server: ImapMailServer | None = None
    ) -> ExecutionReport:
        if server is not None:
            return execute_plan(
                self.store,
                server,
                self.policy,
                ref,
                actor="manager",
                now=NOW,
                batch_size=batch_size,
            )
        with self.server() as connected:
            return execute_plan(
                self.store,
                connected,
                self.policy,
                ref,
                actor="manager",
                now=NOW,
                batch_size=batch_size,
            )

    def plan_status(self, ref: str) -> str:
        with self.store.transaction() as session:
            return str(session.scalar(select(Plan.status).where(Plan.ref == ref)))

    def items(self, ref: str) -> list[Any]:
        """The plan's items wherever they are (members, or the journal once executing)."""
        with self.store.transaction() as session:
            plan_id = session.scalar(select(Plan.id).where(Plan.ref == ref))
            assert plan_id is not None
            items = purge_queries.plan_entries(plan_id)
            return list(session.execute(select(items).order_by(items.c.id)))

    def server_state(self) -> ServerState:
        """Where every planted message is now, read with plain imaplib."""
        conn = self.imap()
        try:
            return read_server_state(conn)
        finally:
            conn.logout()

    def close(self) -> None:
        self.store.close()


@dataclass
class ServerState:
    """Per folder: UIDVALIDITY and UID → (fault key, flags)."""

    uidvalidity: dict[str, int]
    messages: dict[str, dict[int, tuple[str, tuple[str, ...]]]]

    def locations(self) -> dict[str, list[Location]]:
        found: dict[str, list[Location]] = defaultdict(list)
        for folder, by_uid in self.messages.items():
            for uid, (key, _flags) in by_uid.items():
                found[key].append((folder, uid))
        return found

    def key_at(self, folder: str, uid: int) -> str | None:
        entry = self.messages.get(folder, {}).get(uid)
        return entry[0] if entry else None


def _list_folder_names(conn: imaplib.IMAP4) -> list[str]:
    from imapclient import imap_utf7

    _typ, data = conn.list()
    names = []
    for line in data:
        if not isinstance(line, bytes):
            continue
        match = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
        if match is None or b"\\Noselect" in match.group(1):
            continue
        raw = match.group(2)
        if raw.startswith(b'"'):
            raw = raw[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        names.append(str(imap_utf7.decode(raw)))
    return names


def read_server_state(conn: imaplib.IMAP4) -> ServerState:
    uidvalidity: dict[str, int] = {}
    messages: dict[str, dict[int, tuple[str, tuple[str, ...]]]] = {}
    for folder in _list_folder_names(conn):
        typ, _ = conn.select(quote_folder(folder), readonly=True)
        if typ != "OK":
            continue
        _typ, data = conn.response("UIDVALIDITY")
        uidvalidity[folder] = int(data[0]) if data and data[0] else 0
        by_uid: dict[int, tuple[str, tuple[str, ...]]] = {}
        typ, data = conn.uid("FETCH", "1:*", f"(UID FLAGS BODY.PEEK[HEADER.FIELDS ({KEY_HEADER})])")
        if typ == "OK":
            for item in data:
                if not isinstance(item, tuple):
                    continue
                uid_match, key_match = _UID_RE.search(item[0]), _KEY_RE.search(item[1])
                flags_match = _FLAGS_RE.search(item[0])
                if uid_match is None:
                    continue
                key = key_match.group(1).decode() if key_match else f"?{uid_match.group(1)!r}"
                flags = tuple(flags_match.group(1).decode().split()) if flags_match else ()
                by_uid[int(uid_match.group(1))] = (key, flags)
        messages[folder] = by_uid
        conn.close()
    return ServerState(uidvalidity, messages)


# -- the checks ----------------------------------------------------------------------


@dataclass
class PurgeCheck:
    """What a purge did, against the server; every list must be empty."""

    planned: int = 0
    done: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    wrongly_removed: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    ledger: list[str] = field(default_factory=list)
    index: list[str] = field(default_factory=list)
    audit_ok: bool = True
    audit_problem: str = ""

    @property
    def ok(self) -> bool:
        return self.audit_ok and not (
            self.wrongly_removed or self.unaccounted or self.duplicates or self.ledger or self.index
        )

    def problems(self) -> str:
        parts = [
            f"{name}: {value}"
            for name, value in (
                ("wrongly removed", self.wrongly_removed),
                ("unaccounted", self.unaccounted),
                ("duplicates", self.duplicates),
                ("ledger", self.ledger),
                ("index", self.index),
            )
            if value
        ]
        if not self.audit_ok:
            parts.append(f"audit: {self.audit_problem}")
        return "; ".join(parts)


def check_purge(
    world: FaultWorld,
    ref: str,
    before: ServerState,
    *,
    protected: Iterable[str] = (),
    after: ServerState | None = None,
) -> PurgeCheck:
    """Judge a finished purge of plan ``ref``; ``before`` is the server just before execute.

    ``protected`` keys must be untouched whatever the plan said. Items still ``planned``
    or ``in_flight`` count as unaccounted: call this after the run that should finish.
    """
    after = after or world.server_state()
    quarantine = world.policy.quarantine_folder
    deleting = world.policy.purge_action is PurgeAction.DELETE
    result = PurgeCheck()
    protected_keys = set(protected)
    now_at = after.locations()
    items = world.items(ref)
    with world.store.transaction() as session:
        ledger = {
            entry.plan_item_id: entry
            for entry in session.scalars(
                select(QuarantineEntry).where(QuarantineEntry.plan_ref == ref)
            )
        }
    planned_keys: dict[str, Any] = {}
    for item in items:
        key = before.key_at(item.folder, item.uid)
        if key is None:
            result.unaccounted.append(f"item {item.id} ({item.folder}:{item.uid}) not on server")
            continue
        planned_keys[key] = item
    result.planned = len(items)
    reasons: dict[str, int] = defaultdict(int)
    for key, places in sorted(now_at.items()):
        if len(places) > 1:
            result.duplicates.append(f"{key} at {places}")
    for folder, by_uid in sorted(before.messages.items()):
        if folder == quarantine:
            continue
        for uid, (key, _flags) in sorted(by_uid.items()):
            places = now_at.get(key, [])
            untouched = places == [(folder, uid)]
            planned_item = planned_keys.get(key)
            if planned_item is None or key in protected_keys:
                if not untouched:
                    result.wrongly_removed.append(f"{key} {folder}:{uid} -> {places}")
                if planned_item is not None and planned_item.state == ItemState.DONE.value:
                    result.wrongly_removed.append(f"{key} protected but marked done")
                if planned_item is not None and planned_item.state == ItemState.SKIPPED.value:
                    result.skipped += 1
                    reasons[planned_item.outcome] += 1
                continue
            item = planned_item
            if item.state == ItemState.DONE.value:
                result.done += 1
                if deleting:
                    if places:
                        result.unaccounted.append(f"{key} deleted (done) but at {places}")
                    continue
                in_quarantine = [p for p in places if p[0] == quarantine]
                if len(places) != 1 or len(in_quarantine) != 1:
                    result.unaccounted.append(f"{key} done but at {places}")
                    continue
                entry = ledger.get(item.id)
                if entry is None:
                    result.ledger.append(f"{key} done without a quarantine ledger entry")
                elif entry.quarantine_uid not in (None, in_quarantine[0][1]):
                    result.ledger.append(
                        f"{key} ledger says quarantine UID {entry.quarantine_uid}, "
                        f"server has {in_quarantine[0][1]}"
                    )
            elif item.state == ItemState.SKIPPED.value:
                result.skipped += 1
                reasons[item.outcome] += 1
                if not item.outcome:
                    result.unaccounted.append(f"{key} skipped without a reason")
                elif not untouched:
                    result.unaccounted.append(
                        f"{key} skipped ({item.outcome}) but at {places}, not {folder}:{uid}"
                    )
            else:
                result.unaccounted.append(f"{key} left {item.state}")
    ledger_items = {item.id for item in items}
    for item_id in ledger:
        if item_id not in ledger_items:
            result.ledger.append(f"ledger entry for unknown item {item_id}")
    result.skip_reasons = dict(reasons)
    verdict = audit.verify(world.store)
    result.audit_ok = bool(verdict.ok)
    if not verdict.ok:
        result.audit_problem = str(verdict)
    result.index = index_mismatches(world, after, exclude=(quarantine,))
    return result


def index_mismatches(
    world: FaultWorld, state: ServerState, *, exclude: Sequence[str] = ()
) -> list[str]:
    """Folders where the index's UIDs (or UIDVALIDITY) differ from the server's."""
    problems: list[str] = []
    with world.store.transaction() as session:
        rows = session.execute(
            select(Folder.name, Folder.uidvalidity, Message.uid)
            .join(Account, Account.id == Folder.account_id)
            .outerjoin(Message, Message.folder_id == Folder.id)
            .where(Account.name == world.settings.name)
        )
        indexed: dict[str, set[int]] = defaultdict(set)
        validity: dict[str, int | None] = {}
        for name, uidvalidity, uid in rows:
            validity[name] = uidvalidity
            if uid is not None:
                indexed[name].add(uid)
    for name in sorted(validity):
        if name in exclude or name not in state.messages:
            continue
        server_uids = set(state.messages[name])
        if validity[name] != state.uidvalidity.get(name):
            problems.append(f"{name}: UIDVALIDITY {validity[name]} != {state.uidvalidity[name]}")
        if indexed[name] != server_uids:
            only_index = sorted(indexed[name] - server_uids)
            only_server = sorted(server_uids - indexed[name])
            problems.append(f"{name}: only in index {only_index}, only on server {only_server}")
    return problems


# -- creating worlds ------------------------------------------------------------------


def new_world(
    dovecot: ThrowawayDovecot,
    db_url: str,
    *,
    policy: Policy | None = None,
    timeout: float = 30.0,
    schema: str | None = None,
    password: str | None = None,
) -> FaultWorld:
    """A fresh account on ``dovecot`` (removed by ``drop_world``) and a fresh store."""
    username = f"fault{next(_serial):04d}-{secrets.token_hex(3)}@promix.example"
    password = dovecot.add_user(username, password)
    account = dovecot.account(username)
    assert account.password == password
    settings = AccountSettings(
        name=ACCOUNT_NAME,
        host=account.host,
        port=account.port,
        security="none",
        username=username,
        password=PasswordSource(env=PASSWORD_ENV),
        timeout=timeout,
    )
    store = open_store(db_url, schema=schema)
    return FaultWorld(
        dovecot, account, settings, store, db_url, policy or fault_policy(), schema=schema
    )


def drop_world(world: FaultWorld) -> None:
    """Close the store, drop a PostgreSQL schema of the world's own, delete the account."""
    if world.schema and world.store.engine.dialect.name == "postgresql":
        with world.store.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{world.schema}" CASCADE'))
    world.close()
    world.dovecot.remove_user(world.account.username)


# -- the CLI on a fault world ---------------------------------------------------------

RULES_TOML = """\
[retention]
default = "180d"

[purge]
action = "{action}"
quarantine_folder = "Quarantine"
auto_approve_limit = 100000
"""


@dataclass(frozen=True)
class CliSetup:
    """A settings file, rules file and database for ``mailhygiene`` commands."""

    directory: Path
    config: Path
    env: dict[str, str]  # MAILHYGIENE_CONFIG and the account's password variable

    @property
    def database(self) -> Path:
        return self.directory / "mh.db"


def write_cli_setup(
    directory: Path,
    account: ImapAccount,
    *,
    password: str | None = None,
    port: int | None = None,
    action: str = "move",
    timeout: float = 30.0,
) -> CliSetup:
    """``mailhygiene.toml`` + ``rules.toml`` for ``account`` (password from the environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.toml").write_text(RULES_TOML.format(action=action), encoding="utf-8")
    config = directory / "mailhygiene.toml"
    config.write_text(
        "[database]\n"
        'url = "sqlite:///mh.db"\n\n'
        "[policy]\n"
        'rules = "rules.toml"\n\n'
        f"[accounts.{ACCOUNT_NAME}]\n"
        f'host = "{account.host}"\n'
        f"port = {port or account.port}\n"
        'security = "none"\n'
        f'username = "{account.username}"\n'
        f'password_env = "{PASSWORD_ENV}"\n'
        f"timeout = {timeout}\n",
        encoding="utf-8",
    )
    env = {"MAILHYGIENE_CONFIG": str(config), PASSWORD_ENV: password or account.password}
    return CliSetup(directory, config, env)
